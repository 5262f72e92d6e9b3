// statfs(2), which Glibc's Swift module does not export: imgtool tells procfs and sysfs files by it.
#include <sys/vfs.h>
