#!/usr/bin/env python3
"""A headless "browser" for `thv proxy --remote-auth` tests: GET the authorization URL and
follow its redirects (the conformance suite's mock authorization server approves at once
and redirects to the proxy's loopback callback). Used as $BROWSER; stdlib only."""

import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=20) as response:  # follows 302 to the callback
    response.read()
