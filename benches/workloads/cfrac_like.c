/*
 * cfrac_like: a bignum program that lives on small short-lived objects.
 *
 * Shape: mimalloc-bench's cfrac (continued-fraction factoring with a bignum library
 * that allocates every intermediate number). Here a small arbitrary-precision library
 * in which every number is one malloc'd block (an 8-byte header and 32-bit limbs: 12 to
 * 36 bytes here), immutable: every add, sub, mul and divmod returns new numbers and the
 * caller frees the temporaries at once. With it, for each of 300 numbers (independent,
 * each generated from its index):
 *   - find a prime p in 2^24..2^26 and a prime q in 2^63..2^64 (trial division, then
 *     Miller-Rabin with the twelve first primes as bases, exact below 2^78), N = p q;
 *   - expand sqrt(N) as a continued fraction for 600 terms, as CFRAC does: P_n, Q_n,
 *     the partial quotients a_n and the convergents A_n mod N; trial-divide every Q_n
 *     over a factor base (the primes below 200 that N is a square modulo), counting the
 *     relations (Q_n whose rest after the factor base is below 2^20);
 *   - factor N with Pollard's rho (Brent's cycle finding, a gcd every 64 steps).
 * About 70 million malloc+free calls, all of 12..36 bytes, with a handful of
 * numbers live at a time (the live set is a few KiB).
 *
 * Measures: the small-object fast path in a real-looking program: malloc and free
 * interleaved with computation, a tiny live set, LIFO-like reuse.
 *
 * Checks: every number's header is checked when it is freed; isqrt(N) squared brackets
 * N; each Q_n is an exact quotient and A_{n-1}^2 = (-1)^n Q_n (mod N) at every term;
 * the primes trial division takes out multiply back to Q_n; p is checked prime by
 * native trial division; the factor found is p or q and divides N exactly, the
 * cofactor times it giving N back; a digest of every Q_n, a_n and factor and the count
 * of relations over all the numbers equal the values recorded below. A failure exits 1.
 *
 * Single-threaded unless -t is given; with -t T, thread i does numbers i, i + T, ...
 * With --groups N: single-threaded, the numbers are split in N parts, part i charged to
 * /bench/g<i>; with -t, thread i is attached to /bench/g<i % N>.
 */
#include "bench.h"

#define NUMBERS 300
#define SHORT_NUMBERS 30
#define PARTIAL (UINT64_C(1) << 20) /* a relation: Q's rest after the factor base below this */
#define CF_TERMS 600
#define P_LO (UINT64_C(1) << 24)
#define P_HI ((UINT64_C(1) << 26) - 1)
#define RHO_BATCH 64
#define RHO_MAX_ITERS (UINT64_C(1) << 22)
#define BN_MAX 32 /* limbs: 1024 bits, far more than the numbers here need */

/* The digest of all the numbers computed and the count of relations, for the full run
 * and for the short one (the first SHORT_NUMBERS numbers). They depend only on the
 * constants above and on bench.h's PRNG: change those and record the new values, which
 * the failure message prints. */
#define DIGEST_FULL UINT64_C(0xf0ced64401ed1952)
#define RELATIONS_FULL 1348
#define DIGEST_SHORT UINT64_C(0x482dd80ffd10b6d6)
#define RELATIONS_SHORT 153

/* ---------------------------------------------------------------- numbers */

typedef struct {
    uint32_t n;   /* limbs in use, the top one nonzero; 0 for zero */
    uint32_t cap; /* limbs allocated */
    uint32_t d[]; /* little-endian */
} bn;

static __thread uint64_t calls; /* malloc + free calls of this thread */

static bn *bn_new(uint32_t cap)
{
    if (cap == 0)
        cap = 1;
    if (cap > BN_MAX)
        bench_fail("cfrac_like: a number of %u limbs (more than %d)", cap, BN_MAX);
    bn *a = bench_malloc(sizeof *a + cap * sizeof a->d[0]);
    a->n = 0;
    a->cap = cap;
    calls++;
    return a;
}

static void bn_free(bn *a)
{
    if (a->n > a->cap || a->cap > BN_MAX || (a->n && a->d[a->n - 1] == 0))
        bench_fail("cfrac_like: number %p corrupted: %u limbs of %u", (void *)a, a->n, a->cap);
    free(a);
    calls++;
}

static bn *bn_trim(bn *a)
{
    while (a->n && a->d[a->n - 1] == 0)
        a->n--;
    return a;
}

static bn *bn_u64(uint64_t v)
{
    bn *a = bn_new(2);
    a->d[0] = (uint32_t)v;
    a->d[1] = (uint32_t)(v >> 32);
    a->n = 2;
    return bn_trim(a);
}

static bn *bn_copy(const bn *a)
{
    bn *c = bn_new(a->n);
    for (uint32_t i = 0; i < a->n; i++)
        c->d[i] = a->d[i];
    c->n = a->n;
    return c;
}

static int bn_is_u32(const bn *a, uint32_t v)
{
    return v == 0 ? a->n == 0 : a->n == 1 && a->d[0] == v;
}

static uint64_t bn_low64(const bn *a)
{
    return (a->n > 0 ? a->d[0] : 0) | (a->n > 1 ? (uint64_t)a->d[1] << 32 : 0);
}

static unsigned bn_bits(const bn *a)
{
    return a->n == 0 ? 0 : 32 * (a->n - 1) + 32 - (unsigned)__builtin_clz(a->d[a->n - 1]);
}

static int bn_cmp(const bn *a, const bn *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (uint32_t i = a->n; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static bn *bn_add(const bn *a, const bn *b)
{
    if (a->n < b->n) {
        const bn *t = a;
        a = b;
        b = t;
    }
    bn *c = bn_new(a->n + 1);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        carry += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        c->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    c->d[a->n] = (uint32_t)carry;
    c->n = a->n + 1;
    return bn_trim(c);
}

static bn *bn_add_u32(const bn *a, uint32_t v)
{
    bn *c = bn_new(a->n + 1);
    uint64_t carry = v;
    for (uint32_t i = 0; i < a->n; i++) {
        carry += a->d[i];
        c->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    c->d[a->n] = (uint32_t)carry;
    c->n = a->n + 1;
    return bn_trim(c);
}

/* a - b, a >= b. */
static bn *bn_sub(const bn *a, const bn *b)
{
    if (bn_cmp(a, b) < 0)
        bench_fail("cfrac_like: subtraction of a larger number");
    bn *c = bn_new(a->n);
    uint64_t borrow = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t t = (uint64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
        c->d[i] = (uint32_t)t;
        borrow = t >> 63;
    }
    c->n = a->n;
    return bn_trim(c);
}

static bn *bn_absdiff(const bn *a, const bn *b)
{
    return bn_cmp(a, b) >= 0 ? bn_sub(a, b) : bn_sub(b, a);
}

static bn *bn_mul(const bn *a, const bn *b)
{
    if (a->n == 0 || b->n == 0)
        return bn_new(1);
    bn *c = bn_new(a->n + b->n);
    for (uint32_t i = 0; i < a->n + b->n; i++)
        c->d[i] = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (uint32_t j = 0; j < b->n; j++) {
            uint64_t t = (uint64_t)a->d[i] * b->d[j] + c->d[i + j] + carry;
            c->d[i + j] = (uint32_t)t;
            carry = t >> 32;
        }
        c->d[i + b->n] = (uint32_t)carry;
    }
    c->n = a->n + b->n;
    return bn_trim(c);
}

static bn *bn_mul_u32(const bn *a, uint32_t m)
{
    bn *c = bn_new(a->n + 1);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        carry += (uint64_t)a->d[i] * m;
        c->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    c->d[a->n] = (uint32_t)carry;
    c->n = a->n + 1;
    return bn_trim(c);
}

static uint32_t bn_mod_u32(const bn *a, uint32_t m)
{
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;)
        r = ((r << 32) | a->d[i]) % m;
    return (uint32_t)r;
}

static bn *bn_div_u32(const bn *a, uint32_t m, uint32_t *rem)
{
    bn *q = bn_new(a->n);
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        uint64_t cur = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(cur / m);
        r = cur % m;
    }
    q->n = a->n;
    *rem = (uint32_t)r;
    return bn_trim(q);
}

static bn *bn_shr(const bn *a, unsigned k)
{
    uint32_t w = k / 32, s = k % 32;
    if (w >= a->n)
        return bn_new(1);
    bn *c = bn_new(a->n - w);
    for (uint32_t i = 0; i < a->n - w; i++) {
        uint64_t hi = i + w + 1 < a->n ? a->d[i + w + 1] : 0;
        c->d[i] = (uint32_t)((((hi << 32) | a->d[i + w])) >> s);
    }
    c->n = a->n - w;
    return bn_trim(c);
}

static bn *bn_pow2(unsigned k)
{
    bn *c = bn_new(k / 32 + 1);
    for (uint32_t i = 0; i < k / 32; i++)
        c->d[i] = 0;
    c->d[k / 32] = (uint32_t)1 << (k % 32);
    c->n = k / 32 + 1;
    return c;
}

/* a = q b + r, 0 <= r < b (Knuth's algorithm D on 32-bit limbs). */
static void bn_divmod(const bn *a, const bn *b, bn **qp, bn **rp)
{
    if (b->n == 0)
        bench_fail("cfrac_like: division by zero");
    if (bn_cmp(a, b) < 0) {
        *qp = bn_new(1);
        *rp = bn_copy(a);
        return;
    }
    if (b->n == 1) {
        uint32_t r;
        *qp = bn_div_u32(a, b->d[0], &r);
        *rp = bn_u64(r);
        return;
    }
    uint32_t n = b->n, m = a->n - n;
    uint32_t un[BN_MAX + 1], vn[BN_MAX];
    unsigned s = (unsigned)__builtin_clz(b->d[n - 1]);
    /* Normalize: the divisor's top bit set. Shifts by 32 - s are done on 64 bits so that
     * s = 0 works. */
    for (uint32_t i = n - 1; i > 0; i--)
        vn[i] = (b->d[i] << s) | (uint32_t)((uint64_t)b->d[i - 1] >> (32 - s));
    vn[0] = b->d[0] << s;
    un[a->n] = (uint32_t)((uint64_t)a->d[a->n - 1] >> (32 - s));
    for (uint32_t i = a->n - 1; i > 0; i--)
        un[i] = (a->d[i] << s) | (uint32_t)((uint64_t)a->d[i - 1] >> (32 - s));
    un[0] = a->d[0] << s;

    bn *q = bn_new(m + 1);
    for (uint32_t j = m + 1; j-- > 0;) {
        uint64_t num = ((uint64_t)un[j + n] << 32) | un[j + n - 1];
        uint64_t qhat = num / vn[n - 1], rhat = num % vn[n - 1];
        while ((qhat >> 32) != 0 || qhat * vn[n - 2] > ((rhat << 32) | un[j + n - 2])) {
            qhat--;
            rhat += vn[n - 1];
            if ((rhat >> 32) != 0)
                break;
        }
        /* un[j .. j+n] -= qhat * vn */
        int64_t k = 0, t;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t p = qhat * vn[i];
            t = (int64_t)un[i + j] - k - (int64_t)(p & 0xffffffffu);
            un[i + j] = (uint32_t)t;
            k = (int64_t)(p >> 32) - (t >> 32);
        }
        t = (int64_t)un[j + n] - k;
        un[j + n] = (uint32_t)t;
        if (t < 0) { /* qhat was one too large: add vn back */
            qhat--;
            uint64_t c = 0;
            for (uint32_t i = 0; i < n; i++) {
                c += (uint64_t)un[i + j] + vn[i];
                un[i + j] = (uint32_t)c;
                c >>= 32;
            }
            un[j + n] += (uint32_t)c;
        }
        q->d[j] = (uint32_t)qhat;
    }
    q->n = m + 1;
    *qp = bn_trim(q);

    bn *r = bn_new(n);
    for (uint32_t i = 0; i + 1 < n; i++)
        r->d[i] = (un[i] >> s) | (uint32_t)((uint64_t)un[i + 1] << (32 - s));
    r->d[n - 1] = un[n - 1] >> s;
    r->n = n;
    *rp = bn_trim(r);
}

static bn *bn_mod(const bn *a, const bn *m)
{
    bn *q, *r;
    bn_divmod(a, m, &q, &r);
    bn_free(q);
    return r;
}

static bn *bn_mulmod(const bn *a, const bn *b, const bn *m)
{
    bn *p = bn_mul(a, b);
    bn *r = bn_mod(p, m);
    bn_free(p);
    return r;
}

static bn *bn_gcd(const bn *a, const bn *b)
{
    bn *x = bn_copy(a), *y = bn_copy(b);
    while (y->n != 0) {
        bn *r = bn_mod(x, y);
        bn_free(x);
        x = y;
        y = r;
    }
    bn_free(y);
    return x;
}

/* floor(sqrt(a)), by Newton's iteration from above. */
static bn *bn_isqrt(const bn *a)
{
    if (a->n == 0)
        return bn_new(1);
    bn *x = bn_pow2((bn_bits(a) + 1) / 2);
    for (;;) {
        bn *q, *r;
        bn_divmod(a, x, &q, &r);
        bn_free(r);
        bn *s = bn_add(x, q);
        bn_free(q);
        bn *y = bn_shr(s, 1);
        bn_free(s);
        if (bn_cmp(y, x) >= 0) {
            bn_free(y);
            return x;
        }
        bn_free(x);
        x = y;
    }
}

static bn *bn_powmod(const bn *base, const bn *e, const bn *m)
{
    bn *acc = bn_u64(1), *b = bn_mod(base, m);
    for (unsigned i = bn_bits(e); i-- > 0;) {
        bn *t = bn_mulmod(acc, acc, m);
        bn_free(acc);
        acc = t;
        if ((e->d[i / 32] >> (i % 32)) & 1) {
            t = bn_mulmod(acc, b, m);
            bn_free(acc);
            acc = t;
        }
    }
    bn_free(b);
    return acc;
}

/* ---------------------------------------------------------------- primes */

static const uint32_t small_primes[] = {
    2,   3,   5,   7,   11,  13,  17,  19,  23,  29,  31,  37,  41,  43,  47,  53,
    59,  61,  67,  71,  73,  79,  83,  89,  97,  101, 103, 107, 109, 113, 127, 131,
    137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199,
};
#define NSMALL (sizeof small_primes / sizeof small_primes[0])
#define MR_BASES 12 /* 2..37: a deterministic test below 3.3e24 */

/* n > 199^2. */
static int is_prime(const bn *n)
{
    for (size_t i = 0; i < NSMALL; i++)
        if (bn_mod_u32(n, small_primes[i]) == 0)
            return 0;
    bn *one = bn_u64(1);
    bn *nm1 = bn_sub(n, one);
    bn_free(one);
    unsigned s = 0;
    while (((nm1->d[s / 32] >> (s % 32)) & 1) == 0)
        s++;
    bn *d = bn_shr(nm1, s);
    int prime = 1;
    for (int i = 0; i < MR_BASES && prime; i++) {
        bn *a = bn_u64(small_primes[i]);
        bn *x = bn_powmod(a, d, n);
        bn_free(a);
        if (!bn_is_u32(x, 1) && bn_cmp(x, nm1) != 0) {
            prime = 0;
            for (unsigned r = 1; r < s; r++) {
                bn *t = bn_mulmod(x, x, n);
                bn_free(x);
                x = t;
                if (bn_cmp(x, nm1) == 0) {
                    prime = 1;
                    break;
                }
            }
        }
        bn_free(x);
    }
    bn_free(d);
    bn_free(nm1);
    return prime;
}

static bn *next_prime(uint64_t start)
{
    bn *c = bn_u64(start | 1);
    while (!is_prime(c)) {
        bn *t = bn_add_u32(c, 2);
        bn_free(c);
        c = t;
    }
    return c;
}

static int native_is_prime(uint64_t v)
{
    if (v < 2 || (v % 2 == 0 && v != 2))
        return v == 2;
    for (uint64_t f = 3; f * f <= v; f += 2)
        if (v % f == 0)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- continued fraction */

/* Divides Q by the factor base; returns 1 if what is left is below PARTIAL (a full
 * relation, or a partial one with a large prime). The primes taken out must multiply
 * back to Q with the rest. */
static int trial_divide(const bn *Q, const uint32_t *fb, int nfb)
{
    bn *rest = bn_copy(Q), *prod = bn_u64(1);
    for (int i = 0; i < nfb; i++) {
        while (rest->n != 0 && bn_mod_u32(rest, fb[i]) == 0) {
            uint32_t rem;
            bn *t = bn_div_u32(rest, fb[i], &rem);
            bn_free(rest);
            rest = t;
            t = bn_mul_u32(prod, fb[i]);
            bn_free(prod);
            prod = t;
        }
    }
    int smooth = rest->n <= 2 && bn_low64(rest) < PARTIAL;
    bn *back = bn_mul(prod, rest);
    if (bn_cmp(back, Q) != 0)
        bench_fail("cfrac_like: trial division of Q does not multiply back");
    bn_free(back);
    bn_free(prod);
    bn_free(rest);
    return smooth;
}

/* Expands sqrt(N) for `terms` terms; returns how many Q_n gave a relation, and mixes
 * every Q_n and a_n into *digest. */
static uint64_t cf_expand(const bn *N, int terms, uint64_t j, uint64_t *digest)
{
    uint32_t fb[NSMALL];
    int nfb = 0;
    for (size_t i = 0; i < NSMALL; i++) {
        uint64_t p = small_primes[i], r = bn_mod_u32(N, (uint32_t)p), x = 1;
        /* Euler's criterion: N is a square mod p iff r^((p-1)/2) is 0 or 1. */
        for (uint64_t e = (p - 1) / 2; e; e--)
            x = x * r % p;
        if (p == 2 || x <= 1)
            fb[nfb++] = (uint32_t)p;
    }

    bn *rt = bn_isqrt(N);
    bn *sq = bn_mul(rt, rt), *rt1 = bn_add_u32(rt, 1);
    bn *sq1 = bn_mul(rt1, rt1);
    if (bn_cmp(sq, N) > 0 || bn_cmp(sq1, N) <= 0)
        bench_fail("cfrac_like number %" PRIu64 ": isqrt(N) is wrong", j);
    bn_free(sq);
    bn_free(sq1);
    bn_free(rt1);

    /* n = 0: P = 0, Q = 1, a = isqrt(N); A_{-2} = 0, A_{-1} = 1, A_0 = a_0. */
    bn *P = bn_new(1), *Q = bn_u64(1), *a = bn_copy(rt);
    bn *A2 = bn_u64(1), *A1 = bn_copy(rt); /* A_{n-2}, A_{n-1} */
    uint64_t smooth = 0;
    for (int n = 1; n <= terms; n++) {
        /* P_n = a_{n-1} Q_{n-1} - P_{n-1} */
        bn *t = bn_mul(a, Q);
        bn *Pn = bn_sub(t, P);
        bn_free(t);
        bn_free(P);
        P = Pn;
        /* Q_n = (N - P_n^2) / Q_{n-1}, exactly */
        t = bn_mul(P, P);
        bn *u = bn_sub(N, t);
        bn_free(t);
        bn *Qn, *rem;
        bn_divmod(u, Q, &Qn, &rem);
        bn_free(u);
        if (rem->n != 0)
            bench_fail("cfrac_like number %" PRIu64 ": Q_%d is not an exact quotient", j, n);
        bn_free(rem);
        bn_free(Q);
        Q = Qn;
        /* a_n = floor((isqrt(N) + P_n) / Q_n) */
        t = bn_add(rt, P);
        bn *an;
        bn_divmod(t, Q, &an, &rem);
        bn_free(t);
        bn_free(rem);
        bn_free(a);
        a = an;
        /* A_{n-1}^2 = (-1)^n Q_n (mod N) */
        bn *lhs = bn_mulmod(A1, A1, N);
        bn *rhs = (n & 1) ? bn_sub(N, Q) : bn_copy(Q);
        if (bn_cmp(lhs, rhs) != 0)
            bench_fail("cfrac_like number %" PRIu64 ": A_%d^2 != (-1)^%d Q_%d (mod N)", j,
                       n - 1, n, n);
        bn_free(lhs);
        bn_free(rhs);
        smooth += (uint64_t)trial_divide(Q, fb, nfb);
        *digest = bench_mix64(*digest ^ bn_low64(Q)) + bn_low64(a);
        /* A_n = a_n A_{n-1} + A_{n-2} (mod N) */
        t = bn_mul(a, A1);
        u = bn_add(t, A2);
        bn_free(t);
        bn *An = bn_mod(u, N);
        bn_free(u);
        bn_free(A2);
        A2 = A1;
        A1 = An;
    }
    bn_free(P);
    bn_free(Q);
    bn_free(a);
    bn_free(A1);
    bn_free(A2);
    bn_free(rt);
    return smooth;
}

/* ---------------------------------------------------------------- Pollard's rho */

/* x^2 + c mod N */
static bn *rho_f(const bn *x, const bn *c, const bn *N)
{
    bn *s = bn_mul(x, x);
    bn *t = bn_add(s, c);
    bn_free(s);
    bn *r = bn_mod(t, N);
    bn_free(t);
    return r;
}

/* A nontrivial factor of N (composite, not a prime power). */
static bn *rho_factor(const bn *N, uint64_t j)
{
    for (uint32_t cv = 1; cv < 16; cv++) {
        bn *c = bn_u64(cv), *y = bn_u64(2), *x = bn_copy(y), *ys = bn_copy(y);
        bn *q = bn_u64(1), *g = bn_u64(1);
        uint64_t r = 1, iters = 0;
        while (bn_is_u32(g, 1) && iters < RHO_MAX_ITERS) {
            bn_free(x);
            x = bn_copy(y);
            for (uint64_t i = 0; i < r; i++) {
                bn *t = rho_f(y, c, N);
                bn_free(y);
                y = t;
            }
            for (uint64_t k = 0; k < r && bn_is_u32(g, 1); k += RHO_BATCH) {
                bn_free(ys);
                ys = bn_copy(y);
                uint64_t lim = r - k < RHO_BATCH ? r - k : RHO_BATCH;
                for (uint64_t i = 0; i < lim; i++) {
                    bn *t = rho_f(y, c, N);
                    bn_free(y);
                    y = t;
                    bn *d = bn_absdiff(x, y);
                    t = bn_mulmod(q, d, N);
                    bn_free(d);
                    bn_free(q);
                    q = t;
                }
                iters += lim;
                bn_free(g);
                g = bn_gcd(q, N);
            }
            r *= 2;
        }
        if (bn_cmp(g, N) == 0) {
            /* The batch overshot: redo it one step at a time. */
            do {
                bn *t = rho_f(ys, c, N);
                bn_free(ys);
                ys = t;
                bn *d = bn_absdiff(x, ys);
                bn_free(g);
                g = bn_gcd(d, N);
                bn_free(d);
            } while (bn_is_u32(g, 1));
        }
        bn_free(c);
        bn_free(y);
        bn_free(x);
        bn_free(ys);
        bn_free(q);
        if (!bn_is_u32(g, 1) && bn_cmp(g, N) != 0)
            return g;
        bn_free(g);
    }
    bench_fail("cfrac_like number %" PRIu64 ": Pollard's rho found no factor", j);
}

/* ---------------------------------------------------------------- the work */

/* Number j: returns its count of relations, adds its digest to *digest. */
static uint64_t do_number(uint64_t j, uint64_t *digest)
{
    bench_rng r;
    bench_rng_init(&r, j);
    uint64_t ps = bench_range(&r, P_LO, P_HI), qs = bench_next(&r) | (UINT64_C(1) << 63);
    bn *p = next_prime(ps), *q = next_prime(qs);
    if (p->n > 1 || !native_is_prime(bn_low64(p)))
        bench_fail("cfrac_like number %" PRIu64 ": p = %" PRIu64 " is not prime", j,
                   bn_low64(p));
    bn *N = bn_mul(p, q);

    uint64_t d = j, smooth = cf_expand(N, CF_TERMS, j, &d);

    bn *f = rho_factor(N, j);
    if (bn_cmp(f, p) != 0 && bn_cmp(f, q) != 0)
        bench_fail("cfrac_like number %" PRIu64 ": factor %" PRIu64 "... is neither p nor q", j,
                   bn_low64(f));
    bn *co, *rem;
    bn_divmod(N, f, &co, &rem);
    bn *back = bn_mul(co, f);
    if (rem->n != 0 || bn_cmp(back, N) != 0)
        bench_fail("cfrac_like number %" PRIu64 ": the factor does not divide N back", j);
    /* The sum over the numbers does not depend on which thread did which. */
    *digest += bench_mix64(d ^ bn_low64(f));
    bn_free(back);
    bn_free(rem);
    bn_free(co);
    bn_free(f);
    bn_free(N);
    bn_free(q);
    bn_free(p);
    return smooth;
}

typedef struct {
    int index, threads, numbers;
    int split; /* single thread with --groups: step through the groups */
    uint64_t ops, relations, digest;
    pthread_t tid;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    calls = 0;
    int part = -1;
    if (!w->split)
        bench_group_attach(w->index);
    for (int j = w->index; j < w->numbers; j += w->threads) {
        if (w->split)
            bench_group_step(&part, (uint64_t)j, (uint64_t)w->numbers);
        w->relations += do_number((uint64_t)j, &w->digest);
    }
    w->ops = calls;
    return NULL;
}

/* -t given on the command line (otherwise this workload runs one thread). */
static int threads_given(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--groups")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "-t", 2) || !strncmp(argv[i], "--threads", 9))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_opts o = bench_parse(argc, argv, "cfrac_like",
                               "Bignum factoring (continued fraction of sqrt(N), Pollard's "
                               "rho): many small short-lived objects.\n"
                               "Runs ONE thread unless -t is given; -t T splits the numbers "
                               "over T threads.",
                               1);
    if (!threads_given(argc, argv))
        o.threads = 1;
    int numbers = o.short_run ? SHORT_NUMBERS : NUMBERS;
    bench_groups_setup(&o);

    worker *w = calloc((size_t)o.threads, sizeof *w);
    if (w == NULL)
        bench_fail("calloc of %d workers returned NULL", o.threads);
    for (int i = 0; i < o.threads; i++)
        w[i] = (worker){ .index = i, .threads = o.threads, .numbers = numbers,
                         .split = o.threads == 1 };
    double t0 = bench_now();
    if (o.threads == 1) {
        run(&w[0]);
    } else {
        for (int i = 0; i < o.threads; i++)
            w[i].tid = bench_thread_start(run, &w[i]);
        for (int i = 0; i < o.threads; i++)
            bench_thread_join(w[i].tid);
    }
    double secs = bench_now() - t0;

    uint64_t ops = 0, relations = 0, digest = 0;
    for (int i = 0; i < o.threads; i++) {
        ops += w[i].ops;
        relations += w[i].relations;
        digest += w[i].digest;
    }
    uint64_t want_digest = o.short_run ? DIGEST_SHORT : DIGEST_FULL;
    uint64_t want_relations = o.short_run ? RELATIONS_SHORT : RELATIONS_FULL;
    if (digest != want_digest || relations != want_relations)
        bench_fail("cfrac_like: %d numbers gave digest 0x%016" PRIx64 " and %" PRIu64
                   " relations, expected 0x%016" PRIx64 " and %" PRIu64,
                   numbers, digest, relations, want_digest, want_relations);
    free(w);
    bench_result(&o, secs, ops);
    return 0;
}
