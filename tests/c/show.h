/* Shared by the C test programs: text for failure messages. */
#ifndef CGM_TEST_SHOW_H
#define CGM_TEST_SHOW_H

#include <stddef.h>

/* The text with newlines shown as \n, for failure messages (two rotating buffers; a long
   text is cut short). */
static const char *show(const char *s)
{
    static char bufs[2][2048];
    static int which;
    char *out = bufs[which ^= 1];
    size_t n = 0;
    for (; *s && n + 3 < sizeof bufs[0]; s++) {
        if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = 0;
    return out;
}

#endif
