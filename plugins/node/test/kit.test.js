// The kit's own tests, with Node's test runner (`npm test`): each starts the
// fixture plugin as oxiida would and speaks the protocol to it from here.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { encode, Decoder, ExtData } = require('@msgpack/msgpack');

const FIXTURE = path.join(__dirname, 'fixtures', 'testing.js');

/** A plugin process with a tiny host: send(), next() (the next message), calls. */
function start(env = {}) {
  const child = spawn(process.execPath, [FIXTURE], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const decoder = new Decoder();
  const inbox = [];
  const waiting = [];
  let pending = Buffer.alloc(0);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length - 4 >= pending.readUInt32BE(0)) {
      const len = pending.readUInt32BE(0);
      const message = decoder.decode(pending.subarray(4, 4 + len));
      pending = pending.subarray(4 + len);
      if (waiting.length) waiting.shift()(message); else inbox.push(message);
    }
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const send = (message) => {
    const body = encode(message);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length);
    child.stdin.write(Buffer.concat([header, body]));
  };
  const next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiting.push(r)));
  let id = 0;
  const call = (name, args, kwargs, mode = 'thread') => { id += 1; send({ type: 'call', id, name, args, kwargs, mode }); return id; };
  const isolated = (name, args) => call(name, args, undefined, 'process');
  send({ type: 'hello', protocol: [1, 0], host: 'test', config: '' });
  return { child, send, next, call, isolated, exited, stderr: () => stderr };
}

test('hello says the protocol, name, version, functions and capabilities', async () => {
  const p = start();
  const hello = await p.next();
  assert.strictEqual(hello.type, 'hello');
  assert.deepStrictEqual(hello.protocol, [1, 0]);
  assert.strictEqual(hello.name, 'testing');
  assert.strictEqual(hello.version, '1.2.3');
  assert.ok(hello.functions.includes('echo') && hello.functions.includes('rendezvous'));
  assert.deepStrictEqual(hello.capabilities, { concurrent: true, isolated: true, keywords: true });
  p.send({ type: 'bye' });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

test('a plugin can say a newer protocol version (the host refuses it)', async () => {
  const p = start({ TESTING_PROTOCOL: '[2, 0]' });
  assert.deepStrictEqual((await p.next()).protocol, [2, 0]);
  p.child.stdin.end();
  assert.strictEqual((await p.exited).code, 0, 'the end of its input ends it');
});

test('values round-trip, keyword arguments come last, ids kept by the plugin work', async () => {
  const p = start();
  await p.next();
  const v = [null, true, -7, 2.5, 'héllo', [], {}, { k: [1, { z: 'deep' }] }];
  const id = p.call('echo', [v]);
  assert.deepStrictEqual(await p.next(), { type: 'result', id, value: v });
  const kw = p.call('keywords', ['x'], { steps: 3 });
  assert.deepStrictEqual((await p.next()), { type: 'result', id: kw, value: { a: 'x', options: { steps: 3 } } });
  p.call('make_counter', [5]);
  const handle = (await p.next()).value;
  p.call('bump', [handle]);
  assert.strictEqual((await p.next()).value, 6);
  p.send({ type: 'bye' });
  await p.exited;
});

test('errors carry the message, the kind and the stack; unknown names are not_found', async () => {
  const p = start();
  await p.next();
  const id = p.call('fail', ['bad thing']);
  const error = await p.next();
  assert.strictEqual(error.type, 'error');
  assert.strictEqual(error.id, id);
  assert.strictEqual(error.kind, 'raised');
  assert.strictEqual(error.message, 'TypeError: bad thing');
  assert.match(error.traceback, /at Object\.fail \(.*testing\.js:\d+:\d+\)/);
  assert.doesNotMatch(error.traceback, /lib[/\\]index\.js/, 'the kit\'s own frames are cut');
  p.call('reject_later', ['later']);
  assert.strictEqual((await p.next()).message, 'Error: later');
  p.call('nope', []);
  const missing = await p.next();
  assert.strictEqual(missing.kind, 'not_found');
  p.send({ type: 'bye' });
  await p.exited;
});

test('calls overlap: three rendezvous calls meet', async () => {
  const p = start();
  await p.next();
  const ids = [1, 2, 3].map(() => p.call('rendezvous', ['r', 3, 2000]));
  const replies = [await p.next(), await p.next(), await p.next()];
  assert.deepStrictEqual(replies.map((r) => r.id).sort(), ids);
  assert.ok(replies.every((r) => r.type === 'result' && r.value === 3));
  p.send({ type: 'bye' });
  await p.exited;
});

test('cancel aborts the call\'s signal and sends no reply', async () => {
  const p = start();
  await p.next();
  const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'oxiida-node-')), 'heard');
  const id = p.call('wait_for_cancel', [marker]);
  await new Promise((r) => setTimeout(r, 50));
  p.send({ type: 'cancel', id });
  const echo = p.call('echo', ['after']);
  const reply = await p.next();
  assert.deepStrictEqual(reply, { type: 'result', id: echo, value: 'after' }, 'no reply for the cancelled call');
  assert.strictEqual(fs.readFileSync(marker, 'utf8'), 'cancelled');
  p.send({ type: 'bye' });
  await p.exited;
});

test('a crash mid-call ends the process with its status', async () => {
  const p = start();
  await p.next();
  p.call('exit_now', [3]);
  assert.deepStrictEqual(await p.exited, { code: 3, signal: null });
});

test('console.log goes to stderr, never into the protocol', async () => {
  const p = start();
  await p.next();
  p.call('log', ['hi']);
  assert.strictEqual((await p.next()).value, 2);
  p.send({ type: 'bye' });
  await p.exited;
  assert.match(p.stderr(), /^hi\nto stderr: hi\n$/);
});

test('handles: an object kept in the plugin crosses as extension type 1 and comes back as itself', async () => {
  const p = start();
  await p.next();
  p.call('make_box', [41]);
  const box = (await p.next()).value;
  assert.ok(box instanceof ExtData, 'a handle is a MessagePack extension value');
  assert.strictEqual(box.type, 1);
  const data = Buffer.from(box.data);
  assert.strictEqual(data.subarray(8).toString(), 'Box', 'the id (8 bytes), then the type name');
  const id = Number(data.readBigUInt64BE(0));
  p.call('open_box', [box]);
  assert.strictEqual((await p.next()).value, 41, 'the plugin gets its object back');
  p.call('kept_count', []);
  assert.strictEqual((await p.next()).value, 1);
  p.send({ type: 'release', id });
  p.call('kept_count', []);
  assert.strictEqual((await p.next()).value, 0, 'released: the plugin forgot it');
  p.call('open_box', [box]);
  assert.match((await p.next()).message, /was released/);
  p.send({ type: 'bye' });
  await p.exited;
});

test('an isolated call (mode "process") runs in a worker thread', async () => {
  const p = start();
  await p.next();
  let id = p.isolated('where', []);
  assert.deepStrictEqual(await p.next(), { type: 'result', id, value: 'worker' });
  id = p.call('where', []);
  assert.deepStrictEqual(await p.next(), { type: 'result', id, value: 'main' });
  id = p.isolated('echo', [{ k: [1, 2.5, 'x'] }]);
  assert.deepStrictEqual(await p.next(), { type: 'result', id, value: { k: [1, 2.5, 'x'] } });
  id = p.isolated('fail', ['in a worker']);
  const error = await p.next();
  assert.strictEqual(error.message, 'TypeError: in a worker');
  assert.match(error.traceback, /testing\.js:\d+:\d+/);
  p.send({ type: 'bye' });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

test('a crash in an isolated call fails that call only', async () => {
  const p = start();
  await p.next();
  p.call('pid', []);
  const pid = (await p.next()).value;
  let id = p.isolated('exit_now', [3]);
  let reply = await p.next();
  assert.deepStrictEqual([reply.id, reply.type, reply.kind], [id, 'error', 'worker_crashed']);
  assert.match(reply.message, /isolated call's worker exited with code 3/);
  id = p.isolated('throw_later', ['unhandled']);
  reply = await p.next();
  assert.deepStrictEqual([reply.id, reply.kind], [id, 'worker_crashed']);
  assert.match(reply.message, /worker crashed: RangeError: unhandled/);
  id = p.call('pid', []);
  assert.deepStrictEqual(await p.next(), { type: 'result', id, value: pid }, 'the plugin lives on');
  id = p.isolated('where', []);
  assert.strictEqual((await p.next()).value, 'worker', 'a fresh worker takes the next isolated call');
  p.send({ type: 'bye' });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

test('a runaway isolated call blocks no other call, and cancel ends it', async () => {
  const p = start();
  await p.next();
  const spin = p.isolated('spin', []);
  const ids = [p.call('echo', ['meanwhile']), p.isolated('echo', ['beside'])];
  const replies = [await p.next(), await p.next()];
  assert.deepStrictEqual(replies.map((r) => [r.id, r.value]).sort(), [[ids[0], 'meanwhile'], [ids[1], 'beside']]);
  p.send({ type: 'cancel', id: spin });
  const after = p.isolated('where', []);
  assert.deepStrictEqual(await p.next(), { type: 'result', id: after, value: 'worker' }, 'no reply for the cancelled call');
  p.send({ type: 'bye' });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

test('isolated calls refuse handles both ways', async () => {
  const p = start();
  await p.next();
  p.call('make_box', [1]);
  const box = (await p.next()).value;
  p.isolated('open_box', [box]);
  assert.match((await p.next()).message, /isolated call to `open_box` cannot take a handle/);
  p.isolated('make_box', [2]);
  assert.match((await p.next()).message, /returned a handle from an isolated call/);
  p.send({ type: 'bye' });
  await p.exited;
});
