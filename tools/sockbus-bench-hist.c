/* sockbus-bench-hist.c - see sockbus-bench-hist.h. */
#include "sockbus-bench-hist.h"

#include <math.h>
#include <stdlib.h>

#define SUB_BITS 6
#define SUB_COUNT (1u << SUB_BITS)             /* sub-buckets per octave */
#define LINEAR_MAX (2u * SUB_COUNT)            /* values with own buckets */
#define BUCKETS ((65u - SUB_BITS) * SUB_COUNT) /* up to 2^64 - 1 */

struct sbb_hist {
    uint64_t count;
    uint64_t min, max;
    long double sum; /* 64 bits of mantissa: exact for any bench run */
    uint64_t bucket[BUCKETS];
};

sbb_hist *sbb_hist_new(void)
{
    return calloc(1, sizeof(sbb_hist));
}

void sbb_hist_free(sbb_hist *h)
{
    free(h);
}

/* The bucket of v: below LINEAR_MAX the value itself; above, the octave
 * (highest set bit k >= 7) picks a row of 64 and the 6 bits below the top
 * one pick the column, which keeps the indices contiguous. */
static unsigned bucket_of(uint64_t v)
{
    if (v < LINEAR_MAX)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = k - SUB_BITS;
    return shift * SUB_COUNT + (unsigned)(v >> shift);
}

/* The highest value that falls into bucket i. */
static uint64_t bucket_high(unsigned i)
{
    if (i < LINEAR_MAX)
        return i;
    unsigned shift = i / SUB_COUNT - 1;
    uint64_t sub = SUB_COUNT + (i % SUB_COUNT);
    return ((sub + 1) << shift) - 1;
}

void sbb_hist_record(sbb_hist *h, uint64_t v)
{
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += (long double)v;
    h->bucket[bucket_of(v)]++;
}

void sbb_hist_merge(sbb_hist *dst, const sbb_hist *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
}

uint64_t sbb_hist_count(const sbb_hist *h)
{
    return h->count;
}

uint64_t sbb_hist_min(const sbb_hist *h)
{
    return h->min;
}

uint64_t sbb_hist_max(const sbb_hist *h)
{
    return h->max;
}

double sbb_hist_mean(const sbb_hist *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

uint64_t sbb_hist_percentile(const sbb_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    /* The rank of the sample at p, 1-based: ceil, so that p100 is the
     * last sample and p50 of two samples is the first. */
    double r = ceil(p / 100.0 * (double)h->count);
    uint64_t rank = r < 1.0 ? 1 : (uint64_t)r;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = bucket_high(i);
            if (v > h->max)
                v = h->max;
            return v < h->min ? h->min : v;
        }
    }
    return h->max;
}
