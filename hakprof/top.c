/* hakprof top: an ncurses view of a live process (its stats segment) and a replay of a recording.
 * Not written yet: the verb says so and exits 2. */
#include "hakprof.h"

int hp_top_main(int argc, char **argv)
{
    (void)argc;
    return hp_fail(argv[0], "not available in this build yet");
}
