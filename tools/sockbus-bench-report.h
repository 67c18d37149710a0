/* sockbus-bench-report.h - turn a run's measurements into figures, and
 * print them for people or as one JSON object.
 *
 * Rates are messages (or payload megabytes, 10^6 bytes) per second over a
 * window that starts when the publishers start: for publishers it ends
 * when the last one's flush was answered, for deliveries when the last
 * message arrived. Latency is the time from the publisher stamping a
 * message to a subscriber's read() that returned it.
 *
 * Threads: touches only what it is given. */
#ifndef SBB_BENCH_REPORT_H
#define SBB_BENCH_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "sockbus-bench-run.h"

/* True when every message was published and every expected delivery
 * arrived intact, exactly once, and the run was not cut short. */
bool sbb_report_complete(const sbb_opts *o, const sbb_result *r);

/* The human report. */
void sbb_report_text(FILE *f, const sbb_opts *o, const sbb_result *r);

/* One JSON object and a newline. Returns 0 or -ENOMEM. */
int sbb_report_json(FILE *f, const sbb_opts *o, const sbb_result *r);

#endif
