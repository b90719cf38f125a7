// plot.c: line and bar charts as SVG, written with plain fprintf (no libraries), for train.c.
// A chart is a list of series of (x, y) points; axes get "nice" round ticks, and a legend names
// every series. The files open in any browser.
#ifndef OURO_PLOT_C
#define OURO_PLOT_C

#include "common.h"

#define PLOT_MAX_SERIES 18   // the legend's room: 18 rows of 18 px beside the plot

typedef struct {
    const char *name;   // legend entry
    const double *x, *y;
    int n;
    int dashed;         // draw dashed (e.g. a "before" curve)
    int markers;        // draw a dot at every point
} PlotSeries;

typedef struct {
    const char *title, *xlabel, *ylabel;
    PlotSeries series[PLOT_MAX_SERIES];
    int n_series;
    int bars;           // draw the first series as bars at integer x (a distribution)
} Plot;

// Colour of series i: a qualitative palette that stays readable on white.
const char *plot_colour(int i) {
    static const char *palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    return palette[i % 10];
}

// A round step (1, 2 or 5 times a power of ten) giving about `target` ticks over [lo, hi].
double nice_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

void svg_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

// A point is drawn when both coordinates are finite and not so large that the axes' arithmetic
// would overflow (a log can hold anything: NaN for an empty cell, 1e300 after a divergence).
static int plottable(double x, double y) { return fabs(x) < 1e150 && fabs(y) < 1e150; }

// Widens [*lo, *hi] when it is empty or narrower than the doubles' resolution at its values
// (1e10 and 1e10 + 2e-6 are distinct, yet no tick step fits between them): to +-half around it,
// and at least +-5% of the value.
static void widen_range(double *lo, double *hi, double half) {
    if (*hi - *lo > 1e-9 * fmax(fabs(*lo), fabs(*hi)) && *hi - *lo > 1e-12) return;
    double h = fmax(half, 0.05 * fmax(fabs(*lo), fabs(*hi)));
    *lo -= h;
    *hi += h;
}

// Writes the chart to path (atomically). Returns 0 or -1 with ouro_error set.
int plot_write_svg(const Plot *p, const char *path) {
    const double W = 720, H = 440, left = 70, right = 190, top = 40, bottom = 55;
    const double pw = W - left - right, ph = H - top - bottom;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < p->n_series; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            double x = p->series[s].x[i], y = p->series[s].y[i];
            if (!plottable(x, y)) continue;
            x0 = fmin(x0, x); x1 = fmax(x1, x); y0 = fmin(y0, y); y1 = fmax(y1, y);
        }
    if (!(x0 <= x1)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }   // nothing to draw: empty axes
    if (p->bars) { x0 -= 0.5; x1 += 0.5; y0 = fmin(y0, 0); y1 = fmax(y1, 0); }
    widen_range(&x0, &x1, 1);
    widen_range(&y0, &y1, 0.5);
    double ypad = 0.05 * (y1 - y0);
    if (!p->bars) y0 -= ypad;
    y1 += ypad;
    #define SX(x) (left + ((x) - x0) / (x1 - x0) * pw)
    #define SY(y) (top + ph - ((y) - y0) / (y1 - y0) * ph)

    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    FILE *f = af.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", left);
    svg_escape(f, p->title);
    fprintf(f, "</text>\n");

    // grid and ticks: tick i is at first + i * step, at most 50 of them (a step too small to move
    // x, which widen_range rules out, could otherwise loop forever)
    double xs = p->bars ? fmax(1, nice_step(x0, x1, 12)) : nice_step(x0, x1, 6), ys = nice_step(y0, y1, 6);
    for (int i = 0; i <= 50; i++) {
        double x = ceil(x0 / xs) * xs + i * xs;
        if (x > x1 + 1e-9 * xs) break;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                SX(x), top, SX(x), top + ph, SX(x), top + ph + 16, fabs(x) < 1e-12 * xs ? 0 : x);
    }
    for (int i = 0; i <= 50; i++) {
        double y = ceil(y0 / ys) * ys + i * ys;
        if (y > y1 + 1e-9 * ys) break;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                left, SY(y), left + pw, SY(y), left - 6, SY(y) + 4, fabs(y) < 1e-12 * ys ? 0 : y);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
            left, top, pw, ph);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", left + pw / 2, H - 14);
    svg_escape(f, p->xlabel);
    fprintf(f, "</text>\n<text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">", top + ph / 2);
    svg_escape(f, p->ylabel);
    fprintf(f, "</text>\n");

    // data
    for (int s = 0; s < p->n_series; s++) {
        const PlotSeries *ser = &p->series[s];
        const char *colour = plot_colour(s);
        if (p->bars && s == 0) {   // from 0 up (or down, for a negative value)
            for (int i = 0; i < ser->n; i++)
                if (plottable(ser->x[i], ser->y[i]))
                    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" opacity=\"0.8\"/>\n",
                            SX(ser->x[i] - 0.35), fmin(SY(ser->y[i]), SY(0)), SX(ser->x[i] + 0.35) - SX(ser->x[i] - 0.35),
                            fabs(SY(0) - SY(ser->y[i])), colour);
            continue;
        }
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", colour,
                ser->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (int i = 0; i < ser->n; i++)
            if (plottable(ser->x[i], ser->y[i])) fprintf(f, "%.1f,%.1f ", SX(ser->x[i]), SY(ser->y[i]));
        fprintf(f, "\"/>\n");
        if (ser->markers)
            for (int i = 0; i < ser->n; i++)
                if (plottable(ser->x[i], ser->y[i]))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", SX(ser->x[i]), SY(ser->y[i]), colour);
    }

    // legend, right of the plot
    for (int s = 0; s < p->n_series; s++) {
        double y = top + 10 + 18 * s;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%s\"%s/>"
                   "<text x=\"%.1f\" y=\"%.1f\">", left + pw + 12, y, left + pw + 34, y, plot_colour(s),
                p->bars && s == 0 ? "8" : "2", p->series[s].dashed ? " stroke-dasharray=\"6 4\"" : "",
                left + pw + 40, y + 4);
        svg_escape(f, p->series[s].name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
    #undef SX
    #undef SY
    return atomic_commit(&af);
}

// Adds a series; a chart holds at most PLOT_MAX_SERIES (the legend's room), and more are dropped.
void plot_add(Plot *p, const char *name, const double *x, const double *y, int n, int dashed, int markers) {
    if (p->n_series >= PLOT_MAX_SERIES) return;
    p->series[p->n_series++] = (PlotSeries){name, x, y, n, dashed, markers};
}

#endif // OURO_PLOT_C
