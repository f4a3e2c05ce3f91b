/* hakprof flame: flame graphs (self-contained SVG) and folded stacks of allocation call stacks.
 * Not written yet: the verb says so and exits 2. */
#include "hakprof.h"

int hp_flame_main(int argc, char **argv)
{
    (void)argc;
    return hp_fail(argv[0], "not available in this build yet");
}
