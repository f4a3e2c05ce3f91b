/* What hakprof diff and flame share: sets of runs (a recording, a database, a directory of recordings or a glob
 * pattern, each resolved to its database) and the statistics that tell a change from run-to-run noise. */
#ifndef HP_COMPARE_H
#define HP_COMPARE_H
#include <stddef.h>

/* ---- Run sets (runset.c) ---- */
struct hp_runset {
    char *label; /* the argument as the user typed it */
    int n;
    char **inputs; /* each recording or database of the set, in natural order (2.hkp before 10.hkp) */
    char **dbs;    /* the database each input is read from (the input itself for a database) */
};
/* spec: a recording or database; a directory (every *.hkp in it, or every *.db if it holds no recording); or a
 * glob pattern ('base-*.hkp', quoted so the shell leaves it). Recordings are ingested beside themselves when
 * needed. 0, or 2 after printing "hakprof VERB: ...". */
int hp_runset_load(const char *verb, const char *spec, int force, struct hp_runset *out);
void hp_runset_free(struct hp_runset *s);

/* ---- Statistics (stats.c) ---- */
/* The runs' values of one metric on one side; NaN values (undefined in that run) are left out. */
struct hp_sample {
    int n;
    double mean, sd, min, max; /* sd: sample standard deviation (n - 1), 0 when n < 2 */
};
void hp_sample_of(const double *x, int n, struct hp_sample *out);

/* The p-quantile of Student's t with df degrees of freedom (df > 0, not necessarily whole). */
double hp_t_quantile(double p, double df);

/* How the noise of a difference of means was judged. */
enum hp_noise {
    HP_NOISE_UNKNOWN, /* one run on each side (or a side with none): no interval, the threshold alone judges */
    HP_NOISE_WELCH,   /* two or more runs on each side: Welch's t-interval */
    HP_NOISE_POOLED,  /* one run on one side: the other side's spread stands for both (equal variances assumed) */
};
/* Confidence interval at level conf (0.95) of mean(b) - mean(a): fills *lo, *hi and returns the method, or
 * returns HP_NOISE_UNKNOWN and leaves them alone. */
enum hp_noise hp_diff_ci(const struct hp_sample *a, const struct hp_sample *b, double conf, double *lo, double *hi);
#endif
