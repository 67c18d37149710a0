/* sockbus-bench-hist.h - a log-linear latency histogram (HDR style).
 *
 * Values below 128 have a bucket each; above, every power-of-two range
 * [2^k, 2^(k+1)) is split into 64 equal sub-buckets, so a percentile is
 * exact to within 1/64 (1.6 %) of its value, whatever the range, with a
 * fixed 30 KiB of counters and no sorting of samples (the layout of
 * HdrHistogram with 2 significant binary digits of 6 bits).
 *
 * Threads: a histogram belongs to one thread at a time; merge after join. */
#ifndef SBB_BENCH_HIST_H
#define SBB_BENCH_HIST_H

#include <stdint.h>

typedef struct sbb_hist sbb_hist;

/* Returns owned (free with sbb_hist_free), empty; NULL when out of
 * memory. */
sbb_hist *sbb_hist_new(void);

/* Accepts NULL. */
void sbb_hist_free(sbb_hist *h);

/* Count one sample of `v` (any unit; the bench uses nanoseconds). */
void sbb_hist_record(sbb_hist *h, uint64_t v);

/* Add every sample of `src` (borrowed) to `dst`. */
void sbb_hist_merge(sbb_hist *dst, const sbb_hist *src);

/* Number of samples. */
uint64_t sbb_hist_count(const sbb_hist *h);

/* Smallest and largest sample (exact), 0 when empty. */
uint64_t sbb_hist_min(const sbb_hist *h);
uint64_t sbb_hist_max(const sbb_hist *h);

/* Mean of the samples (exact), 0 when empty. */
double sbb_hist_mean(const sbb_hist *h);

/* The value at percentile `p` (0 < p <= 100): the highest value of the
 * bucket holding the sample of that rank, clamped to [min, max], so that
 * percentiles never decrease with p and never exceed max. 0 when empty. */
uint64_t sbb_hist_percentile(const sbb_hist *h, double p);

#endif
