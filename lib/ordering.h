/* Per-key FIFO gate for --ordering (docs/design.md, "Per-key ordering"):
 * at most one item of a key runs at a time; the others of that key wait in
 * arrival order, while items of other keys run freely.  A key is a
 * partition plus optional key bytes.  Knows nothing of Kafka or jobs:
 * items are opaque.
 *
 * Threads: any thread; one mutex inside, a leaf (nothing is called with it
 * held).  Memory: one entry per key with an item running, one node per
 * waiting item, so it follows the worker's in-flight bound.
 * Private to lib/.
 */
#ifndef KINFER_ORDERING_H
#define KINFER_ORDERING_H

#include <stddef.h>
#include <stdint.h>

struct kinfer_order;
struct kinfer_order_key;

/* A gate sized for about expected keys at once (it grows past that). */
struct kinfer_order *kinfer_order_new(size_t expected);

/* NULL is a no-op.  Items still waiting are forgotten, not freed. */
void kinfer_order_free(struct kinfer_order *o);

/* Enter item under key (partition, key[0..len)); key may be NULL (len 0).
 * *slot receives the key's entry, to pass to kinfer_order_leave when the
 * item is done.  Returns 1 when the item may run now (no other item of its
 * key runs), 0 when it waits: a later leave returns it. */
int kinfer_order_enter(struct kinfer_order *o, int32_t partition,
                       const void *key, size_t len, void *item,
                       struct kinfer_order_key **slot);

/* The running item of slot is done.  Returns the next waiting item of the
 * key, which runs now under the same slot, or NULL (then the slot is freed
 * and must not be used again). */
void *kinfer_order_leave(struct kinfer_order *o, struct kinfer_order_key *slot);

/* Keys with an item running, and items waiting, now. */
size_t kinfer_order_keys(struct kinfer_order *o);
size_t kinfer_order_waiting(struct kinfer_order *o);

#endif
