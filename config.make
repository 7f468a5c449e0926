# Appended to nginx's Makefile: build the C++ core with CMake before the
# module is linked.  The target is phony so that CMake, which is
# incremental, decides what to rebuild.

cat << END                                            >> $NGX_MAKEFILE

.PHONY: pubsub_core_lib

$ngx_pubsub_core_lib: pubsub_core_lib

pubsub_core_lib:
	cmake -S $ngx_addon_dir -B $ngx_pubsub_objs/pubsub_core \\
		-DCMAKE_BUILD_TYPE=RelWithDebInfo \\
		-DPUBSUB_TESTS=OFF -DPUBSUB_BENCH=OFF >/dev/null
	+cmake --build $ngx_pubsub_objs/pubsub_core --target pubsub_core

$ngx_pubsub_objs/ngx_pubsub_module.so: $ngx_pubsub_core_lib

END
