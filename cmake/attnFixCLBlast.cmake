# SPDX-License-Identifier: Apache-2.0
# CLBlast's exported package names the OpenCL library by the absolute path it
# had on the machine that built CLBlast (Debian: /usr/lib/x86_64-linux-gnu/
# libOpenCL.so).  When CLBlast is unpacked under another prefix that path may
# not exist; the link then fails with "no rule to make target".  This swaps
# such a missing path for the OpenCL::OpenCL target found by FindOpenCL.
function(attn_fix_clblast_link_interface)
  if(NOT TARGET clblast OR NOT TARGET OpenCL::OpenCL)
    return()
  endif()
  get_target_property(configs clblast IMPORTED_CONFIGURATIONS)
  if(NOT configs)
    return()
  endif()
  foreach(cfg IN LISTS configs)
    get_target_property(libs clblast IMPORTED_LINK_INTERFACE_LIBRARIES_${cfg})
    if(NOT libs)
      continue()
    endif()
    set(fixed "")
    foreach(lib IN LISTS libs)
      if(IS_ABSOLUTE "${lib}" AND NOT EXISTS "${lib}"
         AND lib MATCHES "OpenCL")
        list(APPEND fixed OpenCL::OpenCL)
      else()
        list(APPEND fixed "${lib}")
      endif()
    endforeach()
    set_target_properties(clblast PROPERTIES
      IMPORTED_LINK_INTERFACE_LIBRARIES_${cfg} "${fixed}")
  endforeach()
endfunction()
