// Whole-file reads and writes for model files, in chunks: Node 20's readFile refuses files over
// 2 GiB and writeSync takes at most 2^31 - 1 bytes at once, while a model may hold up to 2^31 - 1
// float32 parameters (8 GiB). Every read and write goes through a view at offset 0, so no
// argument Node checks as an int32 ever exceeds one chunk.

import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { offerHugePages } from '../huge-pages.js';

const CHUNK_BYTES = 1 << 30;

function shrank(path: string, size: number, at: number): Error {
  return new Error(`${path} ended at byte ${at} while being read (its size was ${size}); was it written to meanwhile?`);
}

export async function readWholeFile(path: string, chunk = CHUNK_BYTES): Promise<Uint8Array> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const out = offerHugePages(new Uint8Array(size));
    let at = 0;
    while (at < size) {
      const length = Math.min(chunk, size - at);
      const { bytesRead } = await file.read(out.subarray(at, at + length), 0, length, at);
      if (bytesRead === 0) throw shrank(path, size, at);
      at += bytesRead;
    }
    return out;
  } finally {
    await file.close();
  }
}

export function readWholeFileSync(path: string, chunk = CHUNK_BYTES): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const { size } = fstatSync(fd);
    const out = offerHugePages(new Uint8Array(size));
    let at = 0;
    while (at < size) {
      const length = Math.min(chunk, size - at);
      const read = readSync(fd, out.subarray(at, at + length), 0, length, at);
      if (read === 0) throw shrank(path, size, at);
      at += read;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

export async function writeWholeFile(path: string, bytes: Uint8Array, chunk = CHUNK_BYTES): Promise<void> {
  const file = await open(path, 'w');
  try {
    for (let at = 0; at < bytes.length;) {
      const length = Math.min(chunk, bytes.length - at);
      const { bytesWritten } = await file.write(bytes.subarray(at, at + length), 0, length, at);
      at += bytesWritten;
    }
  } finally {
    await file.close();
  }
}

export function writeWholeFileSync(path: string, bytes: Uint8Array, chunk = CHUNK_BYTES): void {
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < bytes.length;) {
      const length = Math.min(chunk, bytes.length - at);
      at += writeSync(fd, bytes.subarray(at, at + length), 0, length, at);
    }
  } finally {
    closeSync(fd);
  }
}
