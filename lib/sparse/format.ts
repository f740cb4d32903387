// The sparsity modes and their codes, shared by the TypeScript layers, the reference and the
// addon (native/core/sparse/select.h: enum class Mode).

export const SPARSE_MODES = ['dense', 'exact', 'threshold', 'topk', 'predictor'] as const;
export type SparseModeName = (typeof SPARSE_MODES)[number];
/** What a user may ask for ('dense' is what the layers left alone run). */
export const SPARSIFY_MODES = ['exact', 'threshold', 'topk', 'predictor'] as const;
export type SparsifyMode = (typeof SPARSIFY_MODES)[number];

/**
 * Rows that go through a sparse model's layers together and share one union of kept units
 * (kTileRows in native/core/sparse/sparse_model.cpp): a batch is cut into tiles of this many
 * rows, in order, the last one shorter.
 */
export const SPARSE_TILE_ROWS = 16;
/**
 * Above this fraction of a layer's units, the union a tile of several rows needs is computed by
 * the dense GEMM rather than by products over the kept units alone (kUnionDenseFraction in
 * native/core/sparse/sparse_model.cpp).
 */
export const UNION_DENSE_FRACTION = 0.5;

export const SPARSE_MODE_CODES = {
  dense: 0,
  exact: 1,
  threshold: 2,
  topk: 3,
  predictor: 4,
} as const satisfies Record<SparseModeName, number>;
