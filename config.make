# Appended to nginx's Makefile: build the C++ core with CMake before the
# module is linked.  The library's rule always runs (CMake is incremental
# and decides what to rebuild); make then sees whether the library changed
# and relinks the module if it did.

cat << END                                            >> $NGX_MAKEFILE

.PHONY: pubsub_core_force

$ngx_pubsub_core_lib: pubsub_core_force
	cmake -S $ngx_addon_dir -B $ngx_pubsub_objs/pubsub_core \\
		-DCMAKE_BUILD_TYPE=RelWithDebInfo \\
		-DPUBSUB_TESTS=OFF -DPUBSUB_BENCH=OFF >/dev/null
	+cmake --build $ngx_pubsub_objs/pubsub_core --target pubsub_core

pubsub_core_force:

$ngx_pubsub_objs/ngx_pubsub_module.so: $ngx_pubsub_core_lib

END
