# SPDX-License-Identifier: Apache-2.0
# Writes a tool's manual page: the tool prints it from its option table
# (--man, src/cli/cli_options.c), so it always matches --help.
# usage: cmake -DTOOL=path/to/tool -DOUT=path/to/tool.1 -P attnManPage.cmake
execute_process(COMMAND ${TOOL} --man OUTPUT_FILE ${OUT}.tmp
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "${TOOL} --man failed (${rc})")
endif()
file(RENAME ${OUT}.tmp ${OUT})
