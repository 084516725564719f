'use strict';
// oxiida-plugin: make a Node.js script an oxiida process plugin.
//
//   const { serve } = require('oxiida-plugin');
//   serve({ fib(n) { ... }, async fetch(url) { ... } });
//
// The script then speaks the process plugin protocol (docs/plugins.md,
// "Process plugins") on its standard input and output: 4-byte big-endian
// length-prefixed frames, each one MessagePack map with a `type`. Its
// standard output belongs to the protocol, so console.log and
// process.stdout.write are sent to standard error, which oxiida shows
// prefixed with the plugin's name.

const path = require('node:path');
const threads = require('node:worker_threads');
const { Encoder, Decoder, ExtensionCodec } = require('@msgpack/msgpack');

/** The protocol version this kit speaks: [major, minor]. */
const PROTOCOL = [1, 0];

/** The MessagePack extension type of a handle, as in the C ABI (OXIIDA_HANDLE_EXT). */
const HANDLE_EXT = 1;
const HANDLE_TYPE_MAX = 64;

// Objects kept here while oxiida holds handles to them: id -> { object, refs }.
const kept = new Map();
let nextId = 1;
// Handles decoded that this plugin no longer held: calls are scanned for them only then.
let missingSeen = 0;
// Handles decoded in the message being dispatched (isolated calls refuse them).
let handlesIn = 0;

/** What `handle(obj)` returns: sent to oxiida as a handle, not a value. */
class Keep {
  constructor(object, typeName) {
    this.object = object;
    this.typeName = typeName;
  }
}

/**
 * Keeps `object` in the plugin and sends oxiida a handle to it (shown as
 * `<NAME TYPE>`), which a later call gets back as the object itself. The
 * object is forgotten when oxiida has given back every reference.
 */
function handle(object, typeName) {
  const name = typeName || (object && object.constructor && object.constructor.name) || typeof object;
  return new Keep(object, String(name));
}

const extensions = new ExtensionCodec();
extensions.register({
  type: HANDLE_EXT,
  encode(value) {
    if (!(value instanceof Keep)) return null;
    let id = value.id;
    if (id === undefined) {
      id = nextId++;
      Object.defineProperty(value, 'id', { value: id });
      kept.set(id, { object: value.object, refs: 0 });
    }
    kept.get(id).refs += 1;
    const name = Buffer.from(value.typeName, 'utf8').subarray(0, HANDLE_TYPE_MAX);
    const data = Buffer.alloc(8 + name.length);
    data.writeBigUInt64BE(BigInt(id), 0);
    name.copy(data, 8);
    return data;
  },
  decode(data) {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const id = Number(bytes.readBigUInt64BE(0));
    handlesIn += 1;
    const entry = kept.get(id);
    if (entry) return entry.object;
    missingSeen += 1;
    return new Missing(id);
  },
});

/** A handle oxiida sent back that this plugin no longer holds. */
class Missing {
  constructor(id) {
    this.id = id;
  }
}

/** The first Missing in a call's arguments, however nested. */
function missing(value, depth = 0) {
  if (value instanceof Missing) return value;
  if (depth > 64 || value === null || typeof value !== 'object' || value instanceof Keep) return null;
  for (const item of Array.isArray(value) ? value : Object.values(value)) {
    const found = missing(item, depth + 1);
    if (found) return found;
  }
  return null;
}

/** One reference to handle `id` given back by oxiida. */
function release(id) {
  const entry = kept.get(id);
  if (entry && --entry.refs <= 0) kept.delete(id);
}

const encoder = new Encoder({ extensionCodec: extensions });
const decoder = new Decoder({ extensionCodec: extensions });

function frame(message) {
  const body = encoder.encode(message);
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

/** `Type: message` for an Error, as oxiida shows raised errors. */
function describe(error) {
  if (error instanceof Error) {
    return `${error.name || 'Error'}: ${error.message}`;
  }
  return `thrown value: ${typeof error === 'string' ? error : JSON.stringify(error)}`;
}

/** The stack without this kit's frames and what called them. */
function userStack(error) {
  const lines = String(error.stack).split('\n');
  const kit = lines.findIndex((line) => line.includes(__filename));
  return (kit > 0 ? lines.slice(0, kit) : lines).join('\n');
}

function defaultName() {
  const main = require.main && require.main.filename;
  return main ? path.basename(main, path.extname(main)) : 'node';
}

// Isolated calls (`=f=(x)`, mode "process"): each runs in a worker thread
// that loads the plugin's own script again, so `serve(...)` there finds the
// same functions. A crash (an uncaught error, process.exit) or a runaway
// loop there ends that worker only: its call fails (a runaway one when
// oxiida cancels it), the plugin and its other calls carry on.

/** Marks the worker threads this kit starts, in their workerData. */
const ISOLATED = 'oxiida-plugin isolated worker';
/** Idle workers kept for the next isolated call. */
const IDLE_MAX = 4;

/** The first `handle(...)` in a value, however nested. */
function keeps(value, depth = 0) {
  if (value instanceof Keep) return true;
  if (depth > 64 || value === null || typeof value !== 'object') return false;
  return (Array.isArray(value) ? value : Object.values(value)).some((item) => keeps(item, depth + 1));
}

/** In an isolated worker: serve `functions` to the plugin's main thread. */
function serveInWorker(functions) {
  const port = threads.parentPort;
  port.on('message', ({ id, name, args, config }) => {
    const fn = Object.prototype.hasOwnProperty.call(functions, name) ? functions[name] : undefined;
    const fail = (kind, message, traceback) => port.postMessage({ id, error: { kind, message, traceback } });
    if (typeof fn !== 'function') {
      fail('not_found', `no function \`${name}\` in this plugin's isolated worker`);
      return;
    }
    const controller = new AbortController();
    new Promise((resolve) => resolve(fn.apply({ id, config, signal: controller.signal, isolated: true }, args))).then(
      (value) => {
        if (keeps(value)) {
          fail('bad_arguments', `\`${name}\` returned a handle from an isolated call: a handle's object lives in the plugin's main thread, so make handles in plain calls`);
          return;
        }
        try {
          port.postMessage({ id, value: value === undefined ? null : value });
        } catch (e) {
          fail('bad_arguments', `the result of \`${name}\` cannot cross to oxiida: ${e.message}`);
        }
      },
      (error) => fail('raised', describe(error), error instanceof Error && error.stack ? userStack(error) : null),
    );
  });
}

/** The workers of isolated calls: started on demand, reused when idle. */
class Isolation {
  constructor(script) {
    this.script = script;
    this.idle = [];
    this.busy = new Map(); // request id -> worker
  }

  /** Runs `name(...args)` in a worker; `done(reply)` gets the reply's fields. */
  run(id, name, args, config, done) {
    const worker = this.idle.pop() || this.start();
    this.busy.set(id, worker);
    worker.current = { id, done };
    try {
      worker.postMessage({ id, name, args, config });
    } catch (e) {
      // An argument structured clone cannot copy (none that MessagePack decodes).
      this.busy.delete(id);
      worker.current = null;
      this.idle.push(worker);
      done({ error: { kind: 'bad_arguments', message: `the arguments of \`${name}\` cannot reach its isolated worker: ${e.message}` } });
    }
  }

  start() {
    const worker = new threads.Worker(this.script, {
      workerData: { [ISOLATED]: true },
      argv: process.argv.slice(2),
      stdout: true,
      stderr: true,
    });
    // What the worker prints goes where the main thread's does: stderr.
    worker.stdout.pipe(process.stderr);
    worker.stderr.pipe(process.stderr);
    worker.unref();
    const finish = (fields) => {
      const current = worker.current;
      worker.current = null;
      if (!current) return;
      this.busy.delete(current.id);
      current.done(fields);
    };
    worker.on('message', (message) => {
      if (!worker.current || message.id !== worker.current.id) return;
      finish(message);
      if (!worker.dead && this.idle.length < IDLE_MAX) this.idle.push(worker);
      else worker.terminate();
    });
    worker.on('error', (error) => {
      worker.dead = true;
      this.forget(worker);
      finish({ error: { kind: 'worker_crashed', message: `the isolated call's worker crashed: ${describe(error)}`, traceback: error instanceof Error && error.stack ? userStack(error) : null } });
    });
    worker.on('exit', (code) => {
      worker.dead = true;
      this.forget(worker);
      finish({ error: { kind: 'worker_crashed', message: `the isolated call's worker exited with code ${code}` } });
    });
    return worker;
  }

  forget(worker) {
    this.idle = this.idle.filter((w) => w !== worker);
  }

  /** Cancels request `id` if it runs here: its worker is terminated. */
  cancel(id) {
    const worker = this.busy.get(id);
    if (!worker) return false;
    this.busy.delete(id);
    worker.current = null;
    worker.dead = true;
    worker.terminate();
    return true;
  }
}

/**
 * Serves `functions` (an object of functions, by name) to oxiida until it
 * says bye or closes the pipe. Options: `name` (default: the script's file
 * name), `version` (default "0.0.0"), `protocol` (tests only).
 * Each call gets `this` = { id, signal }: `signal` is an AbortSignal that
 * aborts when oxiida cancels the call. Keyword arguments, when a call
 * passes any, come as one object after the positional arguments.
 */
function serve(functions, options = {}) {
  if (!threads.isMainThread && threads.workerData && threads.workerData[ISOLATED]) {
    serveInWorker(functions);
    return;
  }
  const names = Object.keys(functions).filter((k) => typeof functions[k] === 'function');
  const out = process.stdout;
  const send = out.write.bind(out);
  // Standard output carries the protocol: everything else goes to stderr.
  out.write = process.stderr.write.bind(process.stderr);

  const running = new Map(); // request id -> { controller, cancelled }
  let config = '';
  // The script to load again in an isolated call's worker: the main module.
  const script = options.script || (require.main && require.main.filename);
  const isolation = script ? new Isolation(script) : null;

  const reply = (message) => send(frame(message));

  reply({
    type: 'hello',
    protocol: options.protocol || PROTOCOL,
    name: options.name || defaultName(),
    version: options.version || '0.0.0',
    functions: names,
    capabilities: { concurrent: true, isolated: isolation !== null, keywords: true },
  });

  function call(message) {
    const { id, name } = message;
    const fn = Object.prototype.hasOwnProperty.call(functions, name) ? functions[name] : undefined;
    if (typeof fn !== 'function') {
      reply({ type: 'error', id, kind: 'not_found', message: `no function \`${name}\` in this plugin (it has: ${names.join(', ')})` });
      return;
    }
    const gone = missingSeen > 0 && (missing(message.args) || missing(message.kwargs));
    missingSeen = 0;
    if (gone) {
      reply({ type: 'error', id, kind: 'bad_arguments', message: `handle ${gone.id} was released: this plugin no longer holds its object` });
      return;
    }
    // The AbortController is made only when the function asks for its
    // signal: most never do, and making one costs more than the call.
    const call = { controller: null, cancelled: false };
    running.set(id, call);
    const args = Array.isArray(message.args) ? message.args : [];
    if (message.kwargs && Object.keys(message.kwargs).length > 0) {
      args.push(message.kwargs);
    }
    if (message.mode === 'process' && isolation) {
      if (handlesIn > 0) {
        running.delete(id);
        reply({ type: 'error', id, kind: 'bad_arguments', message: `an isolated call to \`${name}\` cannot take a handle: its object lives in the plugin's main thread` });
        return;
      }
      isolation.run(id, name, args, config, ({ value, error }) => {
        if (!running.delete(id)) return;
        if (error) reply({ type: 'error', id, kind: error.kind, message: error.message, traceback: error.traceback || null });
        else reply({ type: 'result', id, value });
      });
      return;
    }
    const context = {
      id,
      config,
      get signal() {
        if (!call.controller) {
          call.controller = new AbortController();
          if (call.cancelled) call.controller.abort();
        }
        return call.controller.signal;
      },
    };
    new Promise((resolve) => resolve(fn.apply(context, args))).then(
      (value) => {
        if (running.delete(id)) {
          try {
            reply({ type: 'result', id, value: value === undefined ? null : value });
          } catch (e) {
            reply({ type: 'error', id, kind: 'bad_arguments', message: `the result of \`${name}\` cannot cross to oxiida: ${e.message}` });
          }
        }
      },
      (error) => {
        if (running.delete(id)) {
          const traceback = error instanceof Error && error.stack ? userStack(error) : null;
          reply({ type: 'error', id, kind: 'raised', message: describe(error), traceback });
        }
      },
    );
  }

  function dispatch(message) {
    switch (message && message.type) {
      case 'hello':
        config = typeof message.config === 'string' ? message.config : '';
        break;
      case 'call':
        call(message);
        break;
      case 'resolve':
        if (names.includes(message.name)) {
          reply({ type: 'result', id: message.id, value: null });
        } else {
          reply({ type: 'error', id: message.id, kind: 'not_found', message: `no function \`${message.name}\`` });
        }
        break;
      case 'cancel': {
        const call = running.get(message.id);
        if (call) {
          running.delete(message.id);
          call.cancelled = true;
          if (call.controller) call.controller.abort();
          if (isolation) isolation.cancel(message.id);
        }
        break;
      }
      case 'release':
        release(message.id);
        break;
      case 'bye':
        process.exit(0);
        break;
      default:
        // A later protocol minor version's message: ignored.
        break;
    }
  }

  let pending = Buffer.alloc(0);
  process.stdin.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length - at >= 4) {
      const len = pending.readUInt32BE(at);
      if (pending.length - at - 4 < len) break;
      const body = pending.subarray(at + 4, at + 4 + len);
      at += 4 + len;
      handlesIn = 0;
      dispatch(decoder.decode(body));
    }
    pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
  });
  process.stdin.on('end', () => process.exit(0));
}

module.exports = { serve, handle, PROTOCOL, HANDLE_EXT, kept };
