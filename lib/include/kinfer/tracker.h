/* Per-partition offset tracker: which consumed offsets are still in flight,
 * and the contiguous "everything below W is answered" watermark that is
 * safe to store and commit.
 *
 * Threads: kinfer_tracker_assign, _add, _revoke and _collect are called by
 * the poll thread only; kinfer_tracker_complete and _release from any thread
 * (the producer's delivery-report thread); _wait_drained from the poll thread.
 * One mutex inside protects everything.
 *
 * Memory is bounded by the number of offsets in flight, not the backlog.
 */
#ifndef KINFER_TRACKER_H
#define KINFER_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/error.h"

struct kinfer_tracker;

enum kinfer_err kinfer_tracker_new(struct kinfer_tracker **out)
    __attribute__((warn_unused_result));

/* NULL is a no-op. */
void kinfer_tracker_free(struct kinfer_tracker *t);

/* Start tracking partition (after an assignment).  Each assignment gets a
 * new generation number, returned; completions carrying an older
 * generation are ignored.  Assigning a partition already tracked starts it
 * afresh (in-flight offsets forgotten). */
uint64_t kinfer_tracker_assign(struct kinfer_tracker *t, int32_t partition);

/* Record offset as in flight for partition.  Offsets of one partition must
 * be added in increasing order (gaps allowed).  On KINFER_OK *gen receives
 * the partition's generation, to pass to kinfer_tracker_complete.
 * KINFER_ERR_NOT_FOUND: the partition is not assigned.
 * KINFER_ERR_INVALID: offset not above the last one added. */
enum kinfer_err kinfer_tracker_add(struct kinfer_tracker *t, int32_t partition,
                                   int64_t offset, uint64_t *gen)
    __attribute__((warn_unused_result));

/* Mark offset answered.  Returns KINFER_ERR_NOT_FOUND (and changes
 * nothing) when the partition was revoked or reassigned since gen, or the
 * offset is not in flight. */
enum kinfer_err kinfer_tracker_complete(struct kinfer_tracker *t,
                                        int32_t partition, uint64_t gen,
                                        int64_t offset);

/* Mark offset ended without an answer (its job failed or was abandoned):
 * it leaves the in-flight count, so kinfer_tracker_wait_drained no longer
 * waits for it, but the watermark never passes it, so it is never
 * committed (the request is consumed again by the partition's next
 * owner).  Same returns and threads as kinfer_tracker_complete. */
enum kinfer_err kinfer_tracker_release(struct kinfer_tracker *t,
                                       int32_t partition, uint64_t gen,
                                       int64_t offset);

/* Stop tracking partition; later completions for it are dropped.  Returns
 * how many offsets were still in flight. */
size_t kinfer_tracker_revoke(struct kinfer_tracker *t, int32_t partition);

/* Call cb(partition, next_offset, arg) for every partition whose watermark
 * moved since the last collect; next_offset is one past the highest offset
 * below which everything is answered (the value to store).  Returns the
 * number of calls.  cb runs with the tracker's lock held: it must not call
 * back into the tracker. */
size_t kinfer_tracker_collect(struct kinfer_tracker *t,
                              void (*cb)(int32_t partition, int64_t next_offset,
                                         void *arg),
                              void *arg);

/* Offsets in flight: for one partition, or for all when partition < 0. */
size_t kinfer_tracker_in_flight(struct kinfer_tracker *t, int32_t partition);

/* Entries held over all partitions: in flight, plus answered and released
 * ones kept behind an older unanswered offset.  This, not the in-flight count,
 * is the tracker's memory (16 bytes an entry). */
size_t kinfer_tracker_held(struct kinfer_tracker *t);

/* Block until the partitions parts[0..n) (all partitions when n == 0) have
 * nothing in flight, or timeout_ms passes.  KINFER_OK or
 * KINFER_ERR_TIMEOUT. */
enum kinfer_err kinfer_tracker_wait_drained(struct kinfer_tracker *t,
                                            const int32_t *parts, size_t n,
                                            int timeout_ms);

#endif
