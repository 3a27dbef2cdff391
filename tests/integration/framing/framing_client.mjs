// The server's own WebSocket framing, checked by a client this project did not write (npm ws,
// strict about RFC 6455). The same checks as framing_client.py.
//
// Usage: node framing_client.mjs PORT. The server on 127.0.0.1:PORT must have
// session.max_message_size at 64 KiB (the default). Prints one line per check; exits 0 when all
// passed, 1 at the first failure. Bounded: every wait has a timeout.
import { WebSocket } from 'ws';

const port = Number(process.argv[2]);
const BURST = 500;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function post(path, body) {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', body });
  if (response.status !== 202) throw new Error(`${path}: HTTP ${response.status}`);
}

async function totals() {
  const response = await fetch(`http://127.0.0.1:${port}/api/v1/stats`);
  return (await response.json()).totals;
}

async function framesReceived() {
  return (await totals()).frames_received;
}

// Sizes on both sides of what the server copies next to its header (512 bytes) and of the
// 16-bit length encoding, so a write cut anywhere cuts every kind of frame.
function stallPayload(i) {
  const sizes = [0, 100, 504, 505, 506, 2000, 70000];
  return `s${String(i).padStart(6, '0')}-` + 'y'.repeat(sizes[i % sizes.length]);
}

// A client whose messages and close are awaited in order.
function connect(id) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/${id}`, { maxPayload: 0 });
  const messages = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString('utf8');
    const waiter = waiters.shift();
    if (waiter) waiter(text);
    else messages.push(text);
  });
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  const opened = new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  const next = () =>
    messages.length > 0 ? Promise.resolve(messages.shift())
                        : new Promise((resolve) => waiters.push(resolve));
  return { ws, opened, closed, next };
}

const checks = {
  async burstArrivesWholeAndInOrder() {
    const c = connect('burst');
    await c.opened;
    const expected = (i) => `m${String(i).padStart(4, '0')}-` + 'x'.repeat(i % 300);
    const lines = [];
    for (let i = 0; i < BURST; ++i) lines.push(JSON.stringify({ to: 'burst', data: expected(i) }));
    await post('/api/v1/batch', lines.join('\n'));
    for (let i = 0; i < BURST; ++i) {
      const message = await withTimeout(c.next(), 10000, `message ${i}`);
      if (message !== expected(i)) throw new Error(`message ${i}: ${String(message).slice(0, 20)}`);
    }
    c.ws.close(1000);
    await c.closed;
  },

  // The client stops reading, so the kernel buffers fill and the server's writes stop part
  // way; once it reads again, every message must arrive whole and in order. Publishing stops
  // soon after the server has bytes it could not write, inside the 1 MiB session limit.
  async stalledReaderGetsEverythingInOrder() {
    const c = connect('stall');
    await c.opened;
    c.ws.pause();
    let sent = 0;
    let held = false;
    for (let round = 0; round < 500 && !held; ++round) {
      const lines = [];
      for (let i = 0; i < 21; ++i) {  // about 220 KB
        lines.push(JSON.stringify({ to: 'stall', data: stallPayload(sent + i) }));
      }
      await post('/api/v1/batch', lines.join('\n'));
      sent += 21;
      if ((await totals()).outbound_bytes > 0) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        held = (await totals()).outbound_bytes > 0;  // still held: the write is waiting
      }
    }
    if (!held) throw new Error('the server never had to hold bytes back');
    c.ws.resume();
    for (let i = 0; i < sent; ++i) {
      const message = await withTimeout(c.next(), 10000, `message ${i}`);
      if (message !== stallPayload(i)) {
        throw new Error(`message ${i}: ${String(message).slice(0, 20)}`);
      }
    }
    c.ws.close(1000);
    await c.closed;
  },

  async pingGetsItsPong() {
    const c = connect('pinger');
    await c.opened;
    const pong = new Promise((resolve) => c.ws.on('pong', (data) => resolve(data.toString())));
    c.ws.ping('are you there');
    const echoed = await withTimeout(pong, 5000, 'pong');
    if (echoed !== 'are you there') throw new Error(`pong carried ${echoed}`);
    c.ws.close(1000);
    await c.closed;
  },

  async fragmentedMessageCountsOnce() {
    const c = connect('fragments');
    await c.opened;
    const before = await framesReceived();
    c.ws.send('frag', { fin: false });
    c.ws.send('men', { fin: false });
    c.ws.send('ted \u2713', { fin: true });
    c.ws.send(Buffer.from([0, 1, 2]), { binary: true });
    for (let i = 0; i < 50; ++i) {
      if ((await framesReceived()) === before + 2) {
        c.ws.close(1000);
        await c.closed;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`frames_received ${await framesReceived()}, expected ${before + 2}`);
  },

  async clientCloseIsAnswered() {
    const c = connect('closer');
    await c.opened;
    c.ws.close(1000, 'done');
    const { code } = await withTimeout(c.closed, 5000, 'close');
    if (code !== 1000) throw new Error(`close code ${code}`);
  },

  async oversizedMessageGets1009() {
    const c = connect('big');
    await c.opened;
    c.ws.send('x'.repeat(64 * 1024 + 1));
    const { code } = await withTimeout(c.closed, 5000, 'close');
    if (code !== 1009) throw new Error(`close code ${code}`);
  },

  async disconnectArrivesAfterEarlierMessages() {
    const c = connect('leaver');
    await c.opened;
    await post('/api/v1/send', JSON.stringify({ to: 'leaver', data: 'last words' }));
    await post('/api/v1/disconnect', JSON.stringify({ to: 'leaver', code: 4321, reason: 'bye' }));
    const message = await withTimeout(c.next(), 5000, 'last words');
    if (message !== 'last words') throw new Error(`got ${message}`);
    const { code, reason } = await withTimeout(c.closed, 5000, 'close');
    if (code !== 4321 || reason !== 'bye') throw new Error(`close ${code} ${reason}`);
  },
};

for (const [name, check] of Object.entries(checks)) {
  try {
    await withTimeout(check(), 30000, name);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    process.exit(1);
  }
  console.log(`ok ${name}`);
}
console.log('PASS');
process.exit(0);
