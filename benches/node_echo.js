// The reference for the process plugin bench (cli/benches/process.rs): a
// bare Node.js MessagePack echo over stdin/stdout, with the same framing and
// library as the kit. Each frame is decoded, a reply with the same id is
// encoded, and it is written back: what any plugin must do at the least.
'use strict';
const path = require('node:path');
const { Encoder, Decoder } = require(path.join(__dirname, '../plugins/node/node_modules/@msgpack/msgpack'));
const encoder = new Encoder();
const decoder = new Decoder();
let pending = Buffer.alloc(0);
process.stdin.on('data', (chunk) => {
  pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  let at = 0;
  while (pending.length - at >= 4) {
    const len = pending.readUInt32BE(at);
    if (pending.length - at - 4 < len) break;
    const message = decoder.decode(pending.subarray(at + 4, at + 4 + len));
    at += 4 + len;
    const body = encoder.encode({ type: 'result', id: message.id, value: message.args[0] + 1 });
    const out = Buffer.allocUnsafe(4 + body.length);
    out.writeUInt32BE(body.length, 0);
    out.set(body, 4);
    process.stdout.write(out);
  }
  pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
});
