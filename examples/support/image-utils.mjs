// Conversions and comparisons between float RGB images in [0, 1] and 8-bit RGB.

/** Float RGB (any range) -> Uint8Array, clamped to [0, 1] and rounded. */
export function toBytes(rgb) {
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i++) {
    const v = rgb[i];
    out[i] = v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0; // NaN -> 0
  }
  return out;
}

/** PSNR in dB between two 8-bit images of the same length (peak 255). */
export function psnr8(a, b) {
  if (a.length !== b.length) throw new RangeError('images differ in size');
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    sum += d * d;
  }
  const mse = sum / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/** |a - b| per channel, multiplied by `gain` and clamped, as an 8-bit image. */
export function errorImage(a, b, gain = 4) {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.min(255, Math.abs(a[i] - b[i]) * gain);
  return out;
}

/**
 * Place equally sized 8-bit RGB images side by side with a `gap`-pixel white border
 * around and between them. Returns { width, height, rgb }.
 */
export function sideBySide(images, width, height, gap = 4) {
  const W = images.length * width + (images.length + 1) * gap;
  const H = height + 2 * gap;
  const rgb = new Uint8Array(W * H * 3).fill(255);
  images.forEach((img, k) => {
    const left = gap + k * (width + gap);
    for (let y = 0; y < height; y++) {
      rgb.set(img.subarray(y * width * 3, (y + 1) * width * 3), ((y + gap) * W + left) * 3);
    }
  });
  return { width: W, height: H, rgb };
}
