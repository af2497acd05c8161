/* Bounded top-k selection for the "topk" backend (see topk_select.h):
 * each query row keeps its k best items in a min-heap whose root is the
 * worst member, so a candidate costs one comparison unless it gets in.
 */
#include <math.h>
#include <stdlib.h>

#include "topk_select.h"

int kinfer_topk_cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Heap order: a is worse than b when it scores lower, or scores the same
 * with a higher id.  The heap keeps its worst element at the root. */
static int sel_worse(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

static void sel_swap(struct kinfer_topk_row *h, size_t a, size_t b)
{
    float s = h->score[a];
    int64_t i = h->id[a];

    h->score[a] = h->score[b];
    h->id[a] = h->id[b];
    h->score[b] = s;
    h->id[b] = i;
}

static void sel_sift_down(struct kinfer_topk_row *h, size_t n, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= n)
            return;
        if (c + 1 < n &&
            sel_worse(h->score[c + 1], h->id[c + 1], h->score[c], h->id[c]))
            c++;
        if (!sel_worse(h->score[c], h->id[c], h->score[i], h->id[i]))
            return;
        sel_swap(h, i, c);
        i = c;
    }
}

static void sel_sift_up(struct kinfer_topk_row *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!sel_worse(h->score[i], h->id[i], h->score[p], h->id[p]))
            return;
        sel_swap(h, i, p);
        i = p;
    }
}

/* Offer items first .. first + n (scores s[0..n)) to the row's heap. */
void kinfer_topk_offer(struct kinfer_topk_row *h, const float *s, size_t first,
                       size_t n)
{
    for (size_t j = 0; j < n; j++) {
        float v = s[j];
        int64_t id = (int64_t)(first + j);

        if (v != v)
            v = -INFINITY; /* NaN: the worst, so the order stays total */
        if (h->size == h->k && !sel_worse(h->score[0], h->id[0], v, id))
            continue;
        /* Only would-be members are looked up: excluded items are rare. */
        if (h->n_excl != 0 && bsearch(&id, h->excl, h->n_excl, sizeof id,
                                      kinfer_topk_cmp_id) != NULL)
            continue;
        if (h->size < h->k) {
            h->score[h->size] = v;
            h->id[h->size] = id;
            sel_sift_up(h, h->size++);
        } else {
            h->score[0] = v;
            h->id[0] = id;
            sel_sift_down(h, h->size, 0);
        }
    }
}

/* Turn the heap into the answer, best first: each step moves the worst
 * remaining element to the end. */
void kinfer_topk_finish(struct kinfer_topk_row *h)
{
    for (size_t end = h->size; end > 1; end--) {
        sel_swap(h, 0, end - 1);
        sel_sift_down(h, end - 1, 0);
    }
}
