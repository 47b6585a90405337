// ONNX Runtime (CPU, npm onnxruntime-node) timing and inference for bench/peers/onnx_models.py.
// usage: node ort_bench.js MODEL.onnx --batch B --iters N --warmup W --threads T [--input x.npy --output y.npy]
// Prints one JSON line: {"median_ms":..., "min_ms":..., "times_ms":[...]}. Random input unless --input.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : def;
}

function readNpy(path) {
  const b = fs.readFileSync(path);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(path + ': not .npy');
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const h = b.toString('latin1', hstart, hstart + hlen);
  if (!h.includes("'<f4'")) throw new Error(path + ': only <f4 is supported');
  const shape = h.match(/\(([^)]*)\)/)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + hstart + hlen, b.byteOffset + b.length));
  return { shape, data };
}

function writeNpy(path, shape, data) {
  let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape.join(', ') + (shape.length === 1 ? ',' : '') + '), }';
  const pad = 64 - ((10 + h.length + 1) % 64);
  h += ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1; head[7] = 0;
  head.writeUInt16LE(h.length, 8);
  fs.writeFileSync(path, Buffer.concat([head, Buffer.from(h, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const model = process.argv[2];
  const threads = Number(arg('threads', '2'));
  const iters = Number(arg('iters', '10'));
  const warmup = Number(arg('warmup', '2'));
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const inName = session.inputNames[0];
  let x;
  if (arg('input')) {
    const a = readNpy(arg('input'));
    x = new ort.Tensor('float32', a.data, a.shape);
  } else {
    const batch = Number(arg('batch', '1'));
    const shape = [batch, 3, Number(arg('size', '224')), Number(arg('size', '224'))];
    const n = shape.reduce((p, d) => p * d, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; ++i) data[i] = Math.sin(i * 0.37);
    x = new ort.Tensor('float32', data, shape);
  }
  const feeds = { [inName]: x };
  let out;
  for (let i = 0; i < warmup; ++i) out = await session.run(feeds);
  const times = [];
  for (let i = 0; i < iters; ++i) {
    const t0 = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  if (arg('output')) {
    const y = out[session.outputNames[0]];
    writeNpy(arg('output'), y.dims, y.data);
  }
  const s = [...times].sort((a, b) => a - b);
  console.log(JSON.stringify({ median_ms: s.length ? s[Math.floor(s.length / 2)] : null, min_ms: s.length ? s[0] : null, times_ms: times, version: require('onnxruntime-node/package.json').version }));
}

main().catch((e) => { console.error(String(e)); process.exit(1); });
