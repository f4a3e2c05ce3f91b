/* The statistics hakprof diff judges changes with: mean and spread of repeated runs, Student's t quantiles (from
 * the regularized incomplete beta function) and confidence intervals of a difference of means. */
#include <math.h>
#include "compare.h"

void hp_sample_of(const double *x, int n, struct hp_sample *out)
{
    out->n = 0;
    out->mean = out->sd = 0;
    out->min = out->max = NAN;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            continue;
        if (out->n == 0 || x[i] < out->min)
            out->min = x[i];
        if (out->n == 0 || x[i] > out->max)
            out->max = x[i];
        sum += x[i];
        out->n++;
    }
    if (out->n == 0) {
        out->mean = NAN;
        return;
    }
    out->mean = sum / out->n;
    if (out->n < 2)
        return;
    /* Two passes: the variance of values that are nearly equal (shares of 99.9%) keeps its digits. */
    double ss = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]))
            ss += (x[i] - out->mean) * (x[i] - out->mean);
    out->sd = sqrt(ss / (out->n - 1));
}

/* The continued fraction of the incomplete beta function, evaluated with the modified Lentz method; it converges
 * quickly for x < (a + 1) / (a + b + 2), which the caller arranges by symmetry. */
static double hp_beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300, eps = 1e-15;
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    if (fabs(d) < tiny)
        d = tiny;
    d = 1 / d;
    double f = d;
    for (int m = 1; m <= 500; m++) {
        /* even step: m (b - m) x / ((a + 2m - 1)(a + 2m)) */
        double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
        d = 1 + num * d;
        c = 1 + num / c;
        if (fabs(d) < tiny)
            d = tiny;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        f *= c * d;
        /* odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) */
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
        d = 1 + num * d;
        c = 1 + num / c;
        if (fabs(d) < tiny)
            d = tiny;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double step = c * d;
        f *= step;
        if (fabs(step - 1) < eps)
            break;
    }
    return f;
}

/* I_x(a, b), the regularized incomplete beta function. */
static double hp_beta_inc(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double lfront = a * log(x) + b * log1p(-x) - (lgamma(a) + lgamma(b) - lgamma(a + b));
    if (x < (a + 1) / (a + b + 2))
        return exp(lfront) * hp_beta_cf(a, b, x) / a;
    return 1 - exp(lfront) * hp_beta_cf(b, a, 1 - x) / b;
}

/* P(T <= t) for Student's t with df degrees of freedom. */
static double hp_t_cdf(double t, double df)
{
    double tail = 0.5 * hp_beta_inc(df / 2, 0.5, df / (df + t * t)); /* P(T > |t|) */
    return t >= 0 ? 1 - tail : tail;
}

double hp_t_quantile(double p, double df)
{
    if (p == 0.5)
        return 0;
    if (p < 0.5)
        return -hp_t_quantile(1 - p, df);
    /* The CDF is monotonic: bisection needs no derivative and cannot diverge. Grow the bracket first (df near 1
     * puts the 99.9% quantile above 300). */
    double lo = 0, hi = 2;
    while (hp_t_cdf(hi, df) < p && hi < 1e12)
        hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (hp_t_cdf(mid, df) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

enum hp_noise hp_diff_ci(const struct hp_sample *a, const struct hp_sample *b, double conf, double *lo, double *hi)
{
    if (a->n < 1 || b->n < 1 || (a->n < 2 && b->n < 2))
        return HP_NOISE_UNKNOWN;
    double d = b->mean - a->mean, se, df;
    enum hp_noise how;
    if (a->n >= 2 && b->n >= 2) {
        double va = a->sd * a->sd / a->n, vb = b->sd * b->sd / b->n;
        se = sqrt(va + vb);
        /* Welch-Satterthwaite; with no spread on either side the interval is the point itself. */
        df = va + vb > 0 ? (va + vb) * (va + vb) /
                               (va * va / (a->n - 1) + vb * vb / (b->n - 1))
                         : a->n + b->n - 2;
        how = HP_NOISE_WELCH;
    } else {
        const struct hp_sample *many = a->n >= 2 ? a : b;
        se = many->sd * sqrt(1.0 / a->n + 1.0 / b->n);
        df = many->n - 1;
        how = HP_NOISE_POOLED;
    }
    double t = se > 0 ? hp_t_quantile(0.5 + conf / 2, df) : 0;
    *lo = d - t * se;
    *hi = d + t * se;
    return how;
}
