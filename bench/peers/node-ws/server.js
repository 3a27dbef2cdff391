// A Node.js peer of shardcast for bench/loadgen comparisons: the same WebSocket and publish
// API, written the way a Node service would usually write it, on the `ws` package.
//
//   GET  /ws/{id}            WebSocket; a newer connection for an id takes over its messages
//   POST /api/v1/send        {"to":"<id>","data":<json>}                 -> 202 {"accepted":1}
//   POST /api/v1/broadcast   {"data":<json>,"except":"<id>"?}            -> 202 {"accepted":1}
//   POST /api/v1/batch       NDJSON, one {"to":"<id>"|"*","data":<json>} per line
//                            -> 202 {"accepted":N,"rejected":M,"errors":[{"line":L,"error":".."}]}
//   GET  /healthz            200
//
// A string `data` is delivered as its text, any other JSON value serialised; frames are always
// text. Sends to an id with no connection are accepted and dropped, as in shardcast.
//
//   npm install && node server.js [port] [host]      (or PORT=8081 HOST=127.0.0.1 node server.js)
//
// It prints "listening on <host>:<port>" to stderr once bound, so port 0 works as it does
// for shardcast.
'use strict';

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] ?? process.env.PORT ?? 8081);
const host = process.argv[3] ?? process.env.HOST ?? '127.0.0.1';
const maxBody = 4 * 1024 * 1024;
const maxListedErrors = 100;
const idPattern = /^[A-Za-z0-9._:@-]{1,128}$/;

// id -> the latest WebSocket for it.
const clients = new Map();

// perMessageDeflate is off by default in ws 8; shardcast does not compress either.
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

wss.on('connection', (ws, id) => {
  clients.set(id, ws);
  ws.on('error', () => {});
  ws.on('close', () => {
    if (clients.get(id) === ws) clients.delete(id);
  });
});

// The wire form of a message: its text when data is a string, else its JSON. Encoded once,
// however many clients it goes to.
function encode(data) {
  return Buffer.from(typeof data === 'string' ? data : JSON.stringify(data));
}

function deliver(ws, payload) {
  if (ws !== undefined && ws.readyState === WebSocket.OPEN) ws.send(payload, { binary: false });
}

function send(to, payload) {
  deliver(clients.get(to), payload);
}

function broadcast(payload, except) {
  for (const [id, ws] of clients) {
    if (id !== except) deliver(ws, payload);
  }
}

// Parses one message of the publish API; returns it, or a string saying what is wrong.
function readMessage(text, shape) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return `malformed JSON: ${e.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return 'expected a JSON object';
  }
  for (const key of Object.keys(value)) {
    const allowed = key === 'data' || (key === 'to' && shape !== 'broadcast') ||
                    (key === 'except' && shape === 'broadcast');
    if (!allowed) return `unknown field "${key}"`;
  }
  if (!('data' in value)) return 'missing field "data"';
  if (shape !== 'broadcast') {
    if (typeof value.to !== 'string') return '"to" must be a string';
    const star = shape === 'batch' && value.to === '*';
    if (!star && !idPattern.test(value.to)) return '"to" is not a valid client id';
  }
  if ('except' in value && (typeof value.except !== 'string' || !idPattern.test(value.except))) {
    return '"except" is not a valid client id';
  }
  return value;
}

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function publish(path, body) {
  if (path === '/api/v1/send' || path === '/api/v1/broadcast') {
    const shape = path === '/api/v1/send' ? 'send' : 'broadcast';
    const message = readMessage(body, shape);
    if (typeof message === 'string') return [400, { error: message }];
    if (shape === 'send') {
      send(message.to, encode(message.data));
    } else {
      broadcast(encode(message.data), message.except);
    }
    return [202, { accepted: 1 }];
  }
  // Batch: each line on its own, in order; a bad line is reported and skipped.
  let accepted = 0;
  let rejected = 0;
  const errors = [];
  const lines = body.split('\n');
  for (let i = 0; i < lines.length; ++i) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line.trim() === '') continue;
    const message = readMessage(line, 'batch');
    if (typeof message === 'string') {
      ++rejected;
      if (errors.length < maxListedErrors) errors.push({ line: i + 1, error: message });
      continue;
    }
    if (message.to === '*') {
      broadcast(encode(message.data));
    } else {
      send(message.to, encode(message.data));
    }
    ++accepted;
  }
  if (accepted === 0 && rejected === 0) {
    return [400, { error: 'empty batch: expected one JSON object per line' }];
  }
  return [202, { accepted, rejected, errors }];
}

const publishPaths = new Set(['/api/v1/send', '/api/v1/broadcast', '/api/v1/batch']);

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/healthz' && req.method === 'GET') return answer(res, 200, { status: 'ok' });
  if (path.startsWith('/ws/')) return answer(res, 426, { error: 'WebSocket upgrade required' });
  if (!publishPaths.has(path)) return answer(res, 404, { error: `no route for ${path}` });
  if (req.method !== 'POST') {
    res.setHeader('Allow', 'POST');
    return answer(res, 405, { error: 'method not allowed' });
  }
  if (Number(req.headers['content-length'] ?? 0) > maxBody) {
    res.setHeader('Connection', 'close');
    return answer(res, 413, { error: 'body too large' });
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const [status, body] = publish(path, Buffer.concat(chunks).toString('utf8'));
    answer(res, status, body);
  });
});

server.on('upgrade', (req, socket, head) => {
  const match = /^\/ws\/([^/?]*)$/.exec(req.url.split('?')[0]);
  if (match === null || !idPattern.test(match[1])) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, match[1]));
});

// Keep publisher connections open as long as shardcast does (http.idle_timeout).
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;

server.listen(port, host, () => {
  const address = server.address();
  process.stderr.write(`listening on ${address.address}:${address.port}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const ws of wss.clients) ws.close(1001, 'server shutdown');
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
