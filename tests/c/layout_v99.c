/* Defines `cgmalloc_layout` with the right magic and a layout version no reader knows,
 * then waits on stdin: `cgmalloc stat` must refuse it in one line (tests/launcher/inspect.rs). */
#include <stdio.h>
#include <stdint.h>

struct { char magic[8]; uint64_t version, size, words[64]; } cgmalloc_layout = {
    {'c', 'g', 'm', 'a', 'l', 'l', 'o', 'c'}, 99, 8 * 67, {0}};

int main(void) {
    char line[16];
    printf("ready %p\n", (void *)&cgmalloc_layout);
    fflush(stdout);
    (void)fgets(line, sizeof line, stdin);
    return 0;
}
