#include <cblas.h>
/* OpenBLAS thread control (not part of the CBLAS standard header on every build). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
/* The kernel set a DYNAMIC_ARCH build chose at load time (OPENBLAS_CORETYPE or its own detection). */
char *openblas_get_corename(void);
