# SPDX-License-Identifier: Apache-2.0
# The installed package works for a consumer (pkg-config and find_package).
# Not in sanitizer builds: the consumer is built without the sanitizer
# runtime the installed library needs.
find_program(ATTN_PKG_CONFIG pkg-config)
if(ATTN_SANITIZE)
  return()
endif()
if(ATTN_PKG_CONFIG)
  add_test(NAME install_consumer
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/install_test.sh
            ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR}
            ${CMAKE_CURRENT_BINARY_DIR}/install_test "${CMAKE_PREFIX_PATH}"
            "$<$<TARGET_EXISTS:attn-probe>:attn-probe >$<$<TARGET_EXISTS:attn-bench>:attn-bench >$<$<TARGET_EXISTS:attn-tune>:attn-tune >$<$<TARGET_EXISTS:attn-demo>:attn-demo>")
else()
  message(WARNING "pkg-config not found: the install_consumer test is not built")
endif()
