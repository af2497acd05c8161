#!/bin/sh
# ctest fixture of unit_plugin_example: installs the build tree into a fresh
# prefix and builds examples/plugin there the way a plugin author would,
# with nothing but the installed headers found through pkg-config.
#
# usage: plugin_example.sh CMAKE MAKE CC BUILD_DIR LIBDIR EXAMPLE_DIR
#                          WORK_DIR [EXTRA_CFLAGS]
# (LIBDIR is CMAKE_INSTALL_LIBDIR; the plugin lands in WORK_DIR/example)
set -eu
if [ $# -lt 7 ]; then
    echo "usage: $0 CMAKE MAKE CC BUILD_DIR LIBDIR EXAMPLE_DIR WORK_DIR" \
        "[EXTRA_CFLAGS]" >&2
    exit 2
fi
cmake=$1 make=$2 cc=$3 build=$4 libdir=$5 example=$6 work=$7 extra=${8-}

rm -rf "$work"
mkdir -p "$work/example"
"$cmake" --install "$build" --prefix "$work/prefix" >"$work/install.log"

PKG_CONFIG_PATH="$work/prefix/$libdir/pkgconfig"
export PKG_CONFIG_PATH
# The .pc must point into this prefix, not back at the source tree.
includedir="$(pkg-config --variable=includedir kinfer-backend)"
test -f "$includedir/kinfer/backend.h" || {
    echo "plugin_example.sh: kinfer-backend.pc: no kinfer/backend.h" \
        "under includedir $includedir" >&2
    exit 1
}
case "$(cd "$includedir" && pwd -P)" in
"$(cd "$work/prefix" && pwd -P)"/*) ;;
*)
    echo "plugin_example.sh: includedir $includedir is outside" \
        "$work/prefix" >&2
    exit 1
    ;;
esac

"$make" -f "$example/Makefile" -C "$work/example" CC="$cc" \
    CFLAGS="-O2 -g -Wall -Wextra $extra"
test -f "$work/example/rowsum.so"
