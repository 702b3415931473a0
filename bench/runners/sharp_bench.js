#!/usr/bin/env node
// sharp_bench: the bench jobs in sharp (libvips inside), in-process, same command line and
// JSON as the other runners (see bench/runners/common.py for the pass structure).
//
//   node sharp_bench.js --job blur2|resize50|resize50d|gray|fit800 --procs N --images DIR
//        --repeat K [--min-time S] [--save DIR] [--quality 85] [--subsampling 444|420]
//        [--png-level L] [--png-filter adaptive|none] [--format webp|avif]
//
// Parallelism as sharp does it best: one process, sharp.concurrency(1) (one libvips thread
// per image) and N jobs in flight on libuv's thread pool, sized to at least N. The libvips
// operation cache is off, so repeated passes recompute everything.
//   blur   = blur(2) (Gaussian, sigma 2)
//   resize = resize(w/2, h/2, fill, lanczos3) with fastShrinkOnLoad off (otherwise sharp
//            decodes JPEGs at half size by DCT scaling and skips the Lanczos work the others do)
//   resize50d = the same resize at sharp's defaults (fastShrinkOnLoad on: shrink-on-load),
//            compared with imgfilters at its own defaults (shrink-on-load on as well)
//   gray   = grayscale() written as one channel
//   fit800 = resize to 800 px wide (lanczos3, aspect kept), for bench/formats.py
// --format webp|avif: the output is lossy WebP (effort 4, sharp's default) or AVIF (4:4:4,
// 8-bit, sharp's default effort 4) at --quality instead of the input's format; the encode
// is then timed on its own (from the filtered pixels, `encode_ms_per_image` in the JSON).
// ignoreIcc: an embedded ICC profile is not applied (nobody else converts colour spaces).
// Output in the input's format, no metadata (sharp's default).
'use strict';

const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const a = {
    job: null, procs: 1, images: null, repeat: 3, minTime: 0, save: null, quality: 85,
    subsampling: '420', pngLevel: 6, pngFilter: 'adaptive', format: null,
  };
  const names = {
    '--job': 'job', '--procs': 'procs', '--images': 'images', '--repeat': 'repeat',
    '--min-time': 'minTime', '--save': 'save', '--quality': 'quality',
    '--subsampling': 'subsampling', '--png-level': 'pngLevel', '--png-filter': 'pngFilter',
    '--format': 'format',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    const v = argv[i + 1];
    a[key] = typeof a[key] === 'number' ? Number(v) : v;
  }
  if (!['blur2', 'resize50', 'resize50d', 'gray', 'fit800'].includes(a.job)) {
    throw new Error('--job: blur2|resize50|resize50d|gray|fit800');
  }
  if (a.format !== null && !['webp', 'avif'].includes(a.format)) {
    throw new Error('--format: webp|avif');
  }
  if (!a.images) throw new Error('--images is required');
  a.procs = Math.max(1, a.procs | 0);
  return a;
}

const args = parseArgs(process.argv.slice(2));
// Before the first async call: libuv reads this when it starts its pool.
process.env.UV_THREADPOOL_SIZE = String(Math.max(4, args.procs));
const sharp = require('sharp');
sharp.concurrency(1);
sharp.cache(false);
sharp.simd(true);

// The same files as imgbench and common.py: JPEG and PNG directly in the directory, by name.
function loadImages(dir) {
  return fs.readdirSync(dir)
    .filter((n) => /\.(png|jpe?g)$/i.test(n) && fs.statSync(path.join(dir, n)).isFile())
    .sort()
    .map((name) => {
      const data = fs.readFileSync(path.join(dir, name));
      const format = data[0] === 0x89 ? 'png' : 'jpeg';
      return { name, data, format };
    });
}

// Seconds spent in the --format encodes of the current pass (the jobs' own share).
let encodeSeconds = 0;

// --format: filter to raw pixels, then encode those alone, timed on their own.
async function webJob(img, p) {
  const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
  const raw = { width: info.width, height: info.height, channels: info.channels };
  const t0 = process.hrtime.bigint();
  let e = sharp(data, { raw });
  e = args.format === 'webp'
    ? e.webp({ quality: args.quality, effort: 4 })
    : e.avif({ quality: args.quality, effort: 4, chromaSubsampling: '4:4:4', bitdepth: 8 });
  const out = await e.toBuffer();
  encodeSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
  return out;
}

function job(img) {
  let p = sharp(img.data, { ignoreIcc: true });
  if (args.job === 'fit800') {
    p = p.resize({ width: 800, kernel: 'lanczos3' });
  } else if (args.job === 'blur2') {
    p = p.blur(2);
  } else if (args.job === 'resize50' || args.job === 'resize50d') {
    p = p.resize(Math.max(1, img.width >> 1), Math.max(1, img.height >> 1),
      { fit: 'fill', kernel: 'lanczos3', fastShrinkOnLoad: args.job === 'resize50d' });
  } else {
    // toColourspace('b-w'): sharp otherwise writes the grey image back as 3-channel sRGB,
    // while everyone else writes one channel.
    p = p.grayscale().toColourspace('b-w');
  }
  if (args.format) return webJob(img, p);
  if (img.format === 'jpeg') {
    p = p.jpeg({
      quality: args.quality,
      chromaSubsampling: args.subsampling === '444' ? '4:4:4' : '4:2:0',
      optimiseCoding: false,
      progressive: false,
      mozjpeg: false,
    });
  } else {
    p = p.png({
      compressionLevel: args.pngLevel,
      adaptiveFiltering: args.pngFilter === 'adaptive',
      palette: false,
      progressive: false,
    });
  }
  return p.toBuffer();
}

// Every image `procs` times, largest first, handed to whichever of the N loops is free.
function taskOrder(images) {
  const bySize = images.map((_, i) => i)
    .sort((a, b) => (images[b].width * images[b].height - images[a].width * images[a].height) || a - b);
  return bySize.flatMap((i) => Array(args.procs).fill(i));
}

async function pass(images, tasks, keep) {
  encodeSeconds = 0;
  let next = 0;
  let jobSeconds = 0;
  let outBytes = 0;
  const kept = new Map();
  const loop = async () => {
    for (;;) {
      const t = next++;
      if (t >= tasks.length) return;
      const img = images[tasks[t]];
      const t0 = process.hrtime.bigint();
      const out = await job(img);
      jobSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
      outBytes += out.length;
      if (keep && !kept.has(tasks[t])) kept.set(tasks[t], out);
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: args.procs }, loop));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const mp = tasks.reduce((s, i) => s + images[i].width * images[i].height, 0) / 1e6;
  return {
    seconds, jobs: tasks.length, mp, jobSeconds, encodeSeconds, outBytes: Math.floor(outBytes / args.procs), kept,
  };
}

function median(xs) {
  const v = [...xs].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

async function main() {
  const images = loadImages(args.images);
  if (!images.length) throw new Error(`no JPEG or PNG images in ${args.images}`);
  for (const img of images) {
    const m = await sharp(img.data).metadata();
    img.width = m.width;
    img.height = m.height;
  }
  // Warm-up, untimed: the smallest image once per loop.
  const smallest = images.reduce((b, im, i) => (im.width * im.height < images[b].width * images[b].height ? i : b), 0);
  await pass(images, Array(args.procs).fill(smallest), false);

  const passes = [];
  let total = 0;
  let kept = null;
  while (passes.length < 10000 && (passes.length < args.repeat || total < args.minTime)) {
    const keep = Boolean(args.save) && passes.length === 0;
    const p = await pass(images, taskOrder(images), keep);
    if (keep) kept = p.kept;
    total += p.seconds;
    passes.push(p);
  }
  if (args.save && kept) {
    fs.mkdirSync(args.save, { recursive: true });
    for (const [i, out] of kept) fs.writeFileSync(path.join(args.save, images[i].name), out);
  }
  const setMp = images.reduce((s, im) => s + im.width * im.height, 0) / 1e6;
  const result = {
    impl: 'sharp',
    job: args.job,
    procs: args.procs,
    images: images.length,
    set_mp: setMp,
    images_per_s: median(passes.map((p) => p.jobs / p.seconds)),
    mp_per_s: median(passes.map((p) => p.mp / p.seconds)),
    ms_per_image: median(passes.map((p) => (1e3 * p.jobSeconds) / p.jobs)),
    encode_ms_per_image: args.format ? median(passes.map((p) => (1e3 * p.encodeSeconds) / p.jobs)) : null,
    out_bytes: passes[0].outBytes,
    passes: passes.map((p) => ({ seconds: p.seconds, jobs: p.jobs, mp: p.mp })),
    versions: { sharp: sharp.versions.sharp, libvips: sharp.versions.vips, node: process.versions.node },
    settings: {
      jpeg: `quality ${args.quality}, chromaSubsampling ${args.subsampling === '444' ? '4:4:4' : '4:2:0'}, `
        + 'optimiseCoding off, baseline, mozjpeg off, no metadata',
      png: `compressionLevel ${args.pngLevel}, adaptiveFiltering ${args.pngFilter === 'adaptive'}, no metadata`,
      threads: `sharp.concurrency(1), ${args.procs} jobs in flight, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE}`,
      cache: 'off',
      icc: 'ignored (ignoreIcc)',
      resize: args.job === 'resize50d' ? 'fastShrinkOnLoad on (default)' : 'fastShrinkOnLoad off',
      format: args.format
        ? `${args.format} quality ${args.quality}, effort 4${args.format === 'avif' ? ', 4:4:4, 8-bit' : ''}, no metadata`
        : 'the input\'s',
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e) => {
  process.stderr.write(`sharp_bench: ${e.stack || e}\n`);
  process.exit(1);
});
