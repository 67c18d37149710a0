/* frame.c - reference counting of shared frames. See frame.h. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

sb_frame *sb_frame_alloc(size_t text_cap, size_t extra)
{
    if (text_cap > UINT32_MAX - 1)
        return NULL;
    sb_frame *f = malloc(sizeof(*f) + text_cap + 1 + extra);
    if (f == NULL)
        return NULL;
    memset(f, 0, sizeof(*f));
    atomic_init(&f->refs, 1);
    return f;
}

sb_frame *sb_frame_ref(sb_frame *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

void sb_frame_ref_n(sb_frame *f, unsigned n)
{
    atomic_fetch_add_explicit(&f->refs, n, memory_order_relaxed);
}

void sb_frame_unref(sb_frame **fp)
{
    sb_frame *f = *fp;
    if (f == NULL)
        return;
    *fp = NULL;
    /* Release on every drop and acquire on the last, so that the freeing
     * thread sees every other holder's reads finished. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

void sb_frame_release(void *f)
{
    sb_frame *p = f;
    sb_frame_unref(&p);
}
