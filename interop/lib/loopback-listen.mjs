// Preloaded into every upstream example server (`node --import`), so that each one listens on
// 127.0.0.1 at the port the runner picked.
//
// Why: the SDK examples simpleSseServer.js and sseAndStreamableHttpCompatibleServer.js hard-code
// port 3000, and every example (server-everything too) calls `app.listen(port)`, which binds all
// interfaces. None of them has an option for the host, so the runner cannot ask them to stay on
// loopback. This shim rewrites the first TCP `listen` call of the process to
// `{ host: '127.0.0.1', port: INTEROP_LISTEN_PORT }`; any later TCP listen keeps its own port but
// is also pinned to 127.0.0.1. Unix-socket and handle listens are left alone.
import net from 'node:net';

const LOOPBACK = '127.0.0.1';
const requestedPort = Number.parseInt(process.env.INTEROP_LISTEN_PORT ?? '', 10);
if (!Number.isInteger(requestedPort) || requestedPort <= 0 || requestedPort > 65535) {
  throw new Error(`loopback-listen: INTEROP_LISTEN_PORT must be a TCP port, got ${process.env.INTEROP_LISTEN_PORT}`);
}

const originalListen = net.Server.prototype.listen;
let portOverridden = false;

function tcpPortOf(args) {
  const [first] = args;
  if (typeof first === 'number') return first;
  if (typeof first === 'string' && /^\d+$/.test(first)) return Number(first);
  if (first && typeof first === 'object' && first.path === undefined && first.handle === undefined && first.fd === undefined) {
    return Number(first.port ?? 0);
  }
  return undefined; // a Unix socket path or an inherited handle: not ours to change
}

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const port = tcpPortOf(args);
  if (port === undefined) return originalListen.apply(this, args);

  const callback = args.find((arg) => typeof arg === 'function');
  const chosenPort = portOverridden ? port : requestedPort;
  portOverridden = true;
  const options = { host: LOOPBACK, port: chosenPort };
  // The examples log the port they asked for (3000); say where they really listen.
  this.once('listening', () => console.error(`[loopback-listen] listening on ${LOOPBACK}:${this.address().port}`));
  return callback ? originalListen.call(this, options, callback) : originalListen.call(this, options);
};
