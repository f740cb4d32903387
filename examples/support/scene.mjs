// The demo's target image, drawn procedurally so the demo needs no input files and is
// the same on every run: smooth colour gradients (easy for an MLP) overlaid with shapes
// that have hard edges and fine repeating detail (stripes, a checkerboard), which a
// plain coordinate MLP blurs and the frequency encoding lets it reproduce.
//
// Coordinates: x, y in [-1, 1], x left to right, y top to bottom, sampled at pixel
// centres, so the scene is resolution independent and --size only changes the sampling.

const TAU = 2 * Math.PI;

/** Colour of the scene at (x, y) as [r, g, b] in [0, 1], written into `out`. */
export function sceneColor(x, y, out) {
  // Background: three slow sinusoids, one per channel.
  let r = 0.5 + 0.4 * Math.sin(1.3 * x + 0.5);
  let g = 0.5 + 0.4 * Math.sin(1.1 * y + 2.0 + 0.6 * x);
  let b = 0.5 + 0.4 * Math.cos(0.9 * (x - y));

  // A diagonal band filled with stripes running across it (period 0.2 in x/y units).
  const across = 0.6 * x - 0.8 * y - 0.05;
  const along = 0.8 * x + 0.6 * y;
  if (Math.abs(across) < 0.16) {
    const on = Math.sin(TAU * 5 * along) > 0;
    [r, g, b] = on ? [0.98, 0.85, 0.15] : [0.3, 0.08, 0.4];
  }

  // A shaded disc: radial falloff inside, a sharp rim.
  {
    const dx = x + 0.45, dy = y + 0.4, d = Math.hypot(dx, dy), R = 0.32;
    if (d < R) {
      const s = 1 - 0.45 * (d / R) ** 2;
      [r, g, b] = [0.95 * s, 0.3 * s + 0.05, 0.15 * s];
    }
  }

  // A ring.
  {
    const d = Math.hypot(x - 0.45, y - 0.35);
    if (d > 0.17 && d < 0.3) [r, g, b] = [0.1, 0.8, 0.85];
  }

  // A small white dot with a dark outline.
  {
    const d = Math.hypot(x - 0.55, y + 0.55);
    if (d < 0.14) [r, g, b] = d < 0.11 ? [1, 1, 1] : [0.05, 0.05, 0.1];
  }

  // A 4x4 checkerboard square (cells 0.1 wide), tinted by position.
  {
    const u = (x + 0.75) / 0.1, v = (y - 0.3) / 0.1;
    if (u >= 0 && u < 4 && v >= 0 && v < 4) {
      const odd = (Math.floor(u) + Math.floor(v)) & 1;
      [r, g, b] = odd ? [0.15, 0.25, 0.85] : [0.95, 0.95, 0.9];
    }
  }

  out[0] = r;
  out[1] = g;
  out[2] = b;
  return out;
}

/** Pixel-centre coordinate of column/row i in an image `size` wide, in [-1, 1]. */
export function pixelCoord(i, size) {
  return (2 * (i + 0.5)) / size - 1;
}

/**
 * Render the scene at size x size with ss x ss supersampling per pixel (light
 * anti-aliasing; edges stay about one pixel wide). Returns { coords, colors }:
 * coords Float32Array [size*size x 2] of (x, y) pixel centres, colors Float32Array
 * [size*size x 3] of RGB in [0, 1], both row-major, rows top to bottom.
 */
export function renderScene(size, ss = 3) {
  const n = size * size;
  const coords = new Float32Array(n * 2);
  const colors = new Float32Array(n * 3);
  const c = [0, 0, 0];
  const px = 2 / size; // pixel width in scene units
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      const i = row * size + col;
      const x = pixelCoord(col, size);
      const y = pixelCoord(row, size);
      coords[2 * i] = x;
      coords[2 * i + 1] = y;
      let r = 0, g = 0, b = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          sceneColor(x + ((sx + 0.5) / ss - 0.5) * px, y + ((sy + 0.5) / ss - 0.5) * px, c);
          r += c[0];
          g += c[1];
          b += c[2];
        }
      }
      const k = ss * ss;
      colors[3 * i] = r / k;
      colors[3 * i + 1] = g / k;
      colors[3 * i + 2] = b / k;
    }
  }
  return { coords, colors };
}
