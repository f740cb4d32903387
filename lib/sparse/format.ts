// The sparsity modes and their codes, shared by the TypeScript layers, the reference and the
// addon (native/core/sparse/select.h: enum class Mode).

export const SPARSE_MODES = ['dense', 'exact', 'threshold', 'topk', 'predictor'] as const;
export type SparseModeName = (typeof SPARSE_MODES)[number];
/** What a user may ask for ('dense' is what the layers left alone run). */
export const SPARSIFY_MODES = ['exact', 'threshold', 'topk', 'predictor'] as const;
export type SparsifyMode = (typeof SPARSIFY_MODES)[number];

export const SPARSE_MODE_CODES = {
  dense: 0,
  exact: 1,
  threshold: 2,
  topk: 3,
  predictor: 4,
} as const satisfies Record<SparseModeName, number>;
