/* The "topk" backend's bounded selection (topk_select.c): for each query
 * row, a size-k min-heap of the best items seen so far, living in the
 * request's output row -- O(items log k) time, O(k) memory.  Private to
 * lib/backends/topk.c.
 *
 * Threads: a row belongs to the infer call that set it up; no shared
 * state.
 */
#ifndef KINFER_TOPK_SELECT_H
#define KINFER_TOPK_SELECT_H

#include <stddef.h>
#include <stdint.h>

/* One query row of the block being scored.  score and id point into the
 * request's outputs (borrowed); excl is the request's sorted, unique
 * exclusion list (borrowed). */
struct kinfer_topk_row {
    float *score; /* [k] */
    int64_t *id;  /* [k] */
    size_t k;
    size_t size;
    const int64_t *excl;
    size_t n_excl;
    size_t req; /* index of the request in the batch */
};

/* qsort/bsearch order of int64_t item ids. */
int kinfer_topk_cmp_id(const void *a, const void *b);

/* Offer items first .. first + n (scores s[0..n)) to the row's heap.
 * Excluded ids are skipped; a NaN score counts as the worst. */
void kinfer_topk_offer(struct kinfer_topk_row *h, const float *s, size_t first,
                       size_t n);

/* Turn the heap into the answer, best first (ties: lower id first). */
void kinfer_topk_finish(struct kinfer_topk_row *h);

#endif
