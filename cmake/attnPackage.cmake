# SPDX-License-Identifier: Apache-2.0
# The Debian package (cpack -G DEB from a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr): everything the install rules put in place,
# the shared and static libraries, headers, tools, manual pages, pkg-config
# and CMake files, documentation.  dpkg-shlibdeps derives the runtime
# dependencies (the OpenCL ICD loader, CLBlast, the C library) from the
# binaries.  scripts/package_test.sh builds, installs, uses and removes it.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME libattn)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "libattn")
set(CPACK_PACKAGE_CONTACT "libattn maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "self-attention and multi-head attention on OpenCL devices and the CPU")
set(CPACK_PACKAGE_DESCRIPTION
    "libattn computes scaled dot-product attention and multi-head attention
layers on any OpenCL device and natively on the CPU (AVX-512, AVX2 or
portable kernels chosen at run time).  This package holds the shared and
static libraries, the C headers, pkg-config and CMake files, the tools
attn-probe, attn-bench, attn-tune and attn-demo with their manual pages,
and the documentation.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The library's own folder, for dpkg-shlibdeps to resolve libattn.so.N.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR})
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# attn_cl.h includes the OpenCL headers; static linking needs CLBlast's.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "opencl-c-headers, libclblast-dev")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "pocl-opencl-icd | opencl-icd")
set(CPACK_STRIP_FILES OFF)
include(CPack)
