// One MCP session over stdio, driven by the TypeScript SDK's StdioClientTransport, with
// `thv proxy stdio` as the server command: the interop runner's stdio checks (harness/stdio.py).
//
//   node clients/stdio_client.mjs '<options JSON>'
//
// Options (JSON): thv, name, targetUri, recorder (lib/exit-recorder.sh), exitFile, stderrLog,
// case (the expected answers, as for clients/stdio_client.py). The session initializes (the
// SDK's latest handshake revision), lists tools, calls one, reads a resource and gets a prompt,
// checking each answer; then client.close() ends the bridge's stdin, and the bridge must exit 0
// before the SDK's own escalation to SIGTERM (2 s). Every step prints `ok ...` or `FAIL ...`;
// the exit status is 0 only if all held. A non-JSON-RPC line on stdout fails the session itself.
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const SESSION_TIMEOUT_MS = 30_000;
const EXIT_BOUND_SECONDS = 2; // the transport's close() waits 2 s before it sends SIGTERM

class ExpectationFailed extends Error {}

function expect(condition, message) {
  if (!condition) throw new ExpectationFailed(message);
}

function onlyText(blocks, what) {
  const texts = blocks.filter((block) => block.type === 'text').map((block) => block.text);
  expect(texts.length === 1, `${what}: expected one text block, got ${JSON.stringify(blocks)}`);
  return texts[0];
}

async function runSession(client, c) {
  const server = client.getServerVersion();
  expect(server?.name === c.expect_server, `serverInfo.name ${server?.name}, expected ${c.expect_server}`);
  console.log(`ok   initialize: server ${server.name}`);

  const tools = await client.listTools();
  const names = tools.tools.map((tool) => tool.name);
  expect(names.includes(c.tool), `tools/list lacks ${c.tool}: ${names}`);
  console.log(`ok   tools/list: ${names.length} tools`);

  const result = await client.callTool({ name: c.tool, arguments: c.arguments });
  expect(!result.isError, `tools/call ${c.tool} is an error: ${JSON.stringify(result)}`);
  const text = onlyText(result.content, 'tools/call');
  expect(text === c.expect_text, `tools/call ${c.tool}: ${JSON.stringify(text)}, expected ${c.expect_text}`);
  console.log(`ok   tools/call ${c.tool}: ${JSON.stringify(text)}`);

  const read = await client.readResource({ uri: c.resource });
  expect(read.contents.length === 1, `resources/read: expected one content, got ${JSON.stringify(read.contents)}`);
  const content = read.contents[0];
  expect(content.uri === c.resource, `resources/read: uri ${content.uri}`);
  expect(typeof content.text === 'string' && content.text.includes(c.expect_resource_text),
    `resources/read: text ${JSON.stringify(content.text)?.slice(0, 200)}`);
  console.log(`ok   resources/read ${c.resource}: ${content.text.length} chars`);

  const prompt = await client.getPrompt({ name: c.prompt, arguments: c.prompt_arguments ?? {} });
  expect(prompt.messages.length === 1, `prompts/get: expected one message, got ${JSON.stringify(prompt.messages)}`);
  const said = onlyText([prompt.messages[0].content], 'prompts/get');
  expect(said === c.expect_prompt_text, `prompts/get ${c.prompt}: ${JSON.stringify(said)}`);
  console.log(`ok   prompts/get ${c.prompt}: ${JSON.stringify(said)}`);
}

function checkExit(exitFile, closedAt) {
  expect(fs.existsSync(exitFile), 'the bridge did not exit by itself after stdin closed (the SDK had to signal it)');
  const [code, at] = fs.readFileSync(exitFile, 'utf8').trim().split(/\s+/);
  const took = Number(at) - closedAt;
  expect(code === '0', `the bridge exited with ${code} after stdin closed`);
  expect(took < EXIT_BOUND_SECONDS, `the bridge took ${took.toFixed(2)}s to exit after stdin closed`);
  console.log(`ok   bridge exited 0, ${took.toFixed(2)}s after stdin closed`);
}

async function main() {
  const o = JSON.parse(process.argv[2]);
  const stderr = fs.openSync(o.stderrLog, 'w');
  const transport = new StdioClientTransport({
    command: o.recorder,
    args: [o.exitFile, o.thv, 'proxy', 'stdio', o.name, '--target-uri', o.targetUri, '--debug'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stderr,
  });
  const client = new Client({ name: 'thv-interop-ts', version: '1.0.0' });
  // A stdout line that is not a JSON-RPC message reaches onerror (the transport's reader throws
  // and carries on); collected here, so such a line fails the check.
  const transportErrors = [];
  client.onerror = (error) => transportErrors.push(error);
  const timer = setTimeout(() => {
    console.log(`FAIL session not done within ${SESSION_TIMEOUT_MS / 1000}s`);
    process.exit(1);
  }, SESSION_TIMEOUT_MS);
  let sessionError = null;
  try {
    await client.connect(transport);
    await runSession(client, o.case);
  } catch (error) {
    sessionError = error; // reported after the bridge was closed and its exit looked at
  }
  const closedAt = Date.now() / 1000;
  await client.close();
  clearTimeout(timer);
  fs.closeSync(stderr);
  if (sessionError) throw sessionError;
  expect(transportErrors.length === 0,
    `stdout carried a line that is not JSON-RPC (${transportErrors.length} errors): ${transportErrors[0]}`);
  console.log('ok   stdout carried JSON-RPC messages only');
  checkExit(o.exitFile, closedAt);
}

main().then(
  () => console.log('ok   all checks passed'),
  (error) => {
    console.log(`FAIL ${error instanceof ExpectationFailed ? error.message : error?.stack ?? error}`);
    process.exitCode = 1;
  },
);
