/* hakprof diff: compares two recordings, sets or databases and judges each change against the noise.
 * Not written yet: the verb says so and exits 2. */
#include "hakprof.h"

int hp_diff_main(int argc, char **argv)
{
    (void)argc;
    return hp_fail(argv[0], "not available in this build yet");
}
