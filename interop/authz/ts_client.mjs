// One MCP client session with the official TypeScript SDK (@modelcontextprotocol/sdk, protocol
// 2025-11-25), driven by the same plan as py_client.py.
//
//   node ts_client.mjs --url URL --plan plan.json
//
// The bearer token, if any, comes from the environment variable AUTHZ_TOKEN. The session lists
// tools, prompts, resources and resource templates (when the plan asks for lists), then makes each
// attempt in order. A refused attempt is recorded with what the SDK surfaced: a JSON-RPC error
// (McpError: code, message) or, for a non-2xx answer, the SDK's StreamableHTTPError (its code is
// the HTTP status; the JSON-RPC error in the answer's body is decoded from its message). Prints one
// JSON report as its last stdout line, in py_client.py's shape.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const SESSION_TIMEOUT_MS = 60_000;

const { values: opts } = parseArgs({
  options: { url: { type: 'string' }, plan: { type: 'string' } },
});
const plan = JSON.parse(readFileSync(opts.plan, 'utf8'));
const token = process.env.AUTHZ_TOKEN || '';

const exchanges = [];
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  let rpcMethod = null;
  if ((init?.method ?? 'GET') === 'POST' && typeof init?.body === 'string') {
    try {
      const body = JSON.parse(init.body);
      rpcMethod = Array.isArray(body) ? 'batch' : body.method;
    } catch {
      rpcMethod = '?';
    }
  }
  exchanges.push({
    http_method: init?.method ?? 'GET',
    rpc_method: rpcMethod,
    status: response.status,
    content_type: (response.headers.get('content-type') ?? '').split(';')[0],
  });
  return response;
}

function textOf(items) {
  return (items ?? [])
    .map((item) => item?.text ?? item?.content?.text ?? null)
    .filter((t) => t !== null)
    .join('\n');
}

function describeError(err) {
  if (err?.name === 'McpError') {
    const prefix = `MCP error ${err.code}: `;
    return { code: err.code, message: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  if (err?.constructor?.name === 'StreamableHTTPError') {
    const text = String(err.message);
    const start = text.indexOf('{');
    let rpc = null;
    if (start >= 0) {
      try {
        rpc = JSON.parse(text.slice(start));
      } catch {
        rpc = null;
      }
    }
    return {
      code: rpc?.error?.code ?? null,
      message: rpc?.error?.message ?? text,
      http_error: err.code,
      rpc_id: rpc && Object.hasOwn(rpc, 'id') ? rpc.id : undefined,
    };
  }
  return { code: null, message: `${err?.name ?? 'Error'}: ${err?.message ?? err}` };
}

async function attemptOne(client, attempt) {
  const out = { label: attempt.label ?? attempt.name, kind: attempt.kind, name: attempt.name, ok: false, text: null, is_error: null, error: null };
  const before = exchanges.length;
  let progress = 0;
  try {
    if (attempt.kind === 'tool') {
      const options = attempt.progress ? { onprogress: () => { progress += 1; } } : undefined;
      const result = await client.callTool({ name: attempt.name, arguments: attempt.args ?? {} }, undefined, options);
      out.is_error = Boolean(result.isError);
      out.text = textOf(result.content);
      out.ok = !result.isError;
    } else if (attempt.kind === 'prompt') {
      const result = await client.getPrompt({ name: attempt.name, arguments: attempt.args ?? {} });
      out.text = textOf(result.messages);
      out.ok = true;
    } else if (attempt.kind === 'resource') {
      const result = await client.readResource({ uri: attempt.name });
      out.text = result.contents.map((c) => c.text ?? '').join('\n');
      out.ok = true;
    } else {
      throw new Error(`unknown attempt kind ${attempt.kind}`);
    }
  } catch (err) {
    out.error = describeError(err);
  }
  const mine = exchanges.slice(before).filter((x) => x.http_method === 'POST');
  if (mine.length) {
    out.http_status = mine[mine.length - 1].status;
    out.content_type = mine[mine.length - 1].content_type;
  }
  out.progress_notifications = progress;
  return out;
}

async function session() {
  const report = { ok: false, error: null, lists: {}, list_errors: {}, attempts: [], http: exchanges };
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers }, fetch: recordingFetch });
  const client = new Client({ name: 'authz-ts', version: '1.0.0' });
  await client.connect(transport);
  try {
    report.protocol_version = transport.protocolVersion ?? null;
    report.server_name = client.getServerVersion()?.name ?? null;
    if (plan.lists ?? true) {
      const lists = [
        ['tools', () => client.listTools(), (r) => r.tools.map((t) => ({ name: t.name, description: t.description ?? null, annotations: t.annotations ?? null }))],
        ['prompts', () => client.listPrompts(), (r) => r.prompts.map((p) => p.name)],
        ['resources', () => client.listResources(), (r) => r.resources.map((x) => x.uri)],
        ['templates', () => client.listResourceTemplates(), (r) => r.resourceTemplates.map((x) => x.uriTemplate)],
      ];
      for (const [key, call, shape] of lists) {
        try {
          report.lists[key] = shape(await call());
        } catch (err) {
          report.list_errors[key] = describeError(err);
        }
      }
    }
    for (const attempt of plan.attempts ?? []) {
      report.attempts.push(await attemptOne(client, attempt));
    }
    report.ok = true;
  } finally {
    await client.close();
  }
  return report;
}

let report;
try {
  report = await Promise.race([
    session(),
    new Promise((_, reject) => { setTimeout(() => reject(new Error(`session exceeded ${SESSION_TIMEOUT_MS} ms`)), SESSION_TIMEOUT_MS).unref(); }),
  ]);
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`);
  report = { ok: false, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}`, http: exchanges };
}
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(report.ok ? 0 : 1);
