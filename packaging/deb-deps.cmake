# CPACK_PROJECT_CONFIG_FILE of the Debian package (packaging/deb.cmake), read
# by cpack after the build: Depends and Recommends from dpkg-shlibdeps.
#   Depends     what the agent and the input plugins link, plus
#               CPACK_MITTARI_DEPENDS (what they use without linking);
#   Recommends  what only the output modules (plugins/output-*.so) link and
#               the agent does not: libcurl4, libmosquitto1, libpq5. An agent
#               installed without them runs every input and the file output;
#               an http, mqtt or postgresql output then fails `mittari check`
#               naming the library and the packages to install
#               (docs/operations.md, "Installing the package").
if(NOT CPACK_GENERATOR STREQUAL "DEB")
  return()
endif()
set(bin ${CPACK_MITTARI_BINARY_DIR})
file(GLOB plugins ${bin}/plugins/*.so)
file(GLOB modules ${bin}/plugins/output-*.so)
list(REMOVE_ITEM plugins ${modules})
if(NOT modules)
  message(FATAL_ERROR "deb-deps.cmake: no output modules in ${bin}/plugins")
endif()
set(work ${bin}/deb-deps)
file(MAKE_DIRECTORY ${work}/debian)
file(WRITE ${work}/debian/control "") # dpkg-shlibdeps wants one to exist

# shlibdeps OUT FILES...: "pkg (>= v), pkg, ..." for the libraries FILES link
function(shlibdeps out)
  set(args)
  foreach(f ${ARGN})
    list(APPEND args -e${f})
  endforeach()
  execute_process(COMMAND dpkg-shlibdeps -O ${args} WORKING_DIRECTORY ${work}
    OUTPUT_VARIABLE text ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "dpkg-shlibdeps failed: ${err}")
  endif()
  string(REGEX REPLACE "^shlibs:Depends=" "" text "${text}")
  string(STRIP "${text}" text)
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

shlibdeps(agent_deps ${bin}/mittari ${plugins})
shlibdeps(module_deps ${modules})

# the agent's package names, then every module dependency not among them
string(REPLACE ", " ";" agent_list "${agent_deps}")
set(agent_names)
foreach(d ${agent_list})
  string(REGEX REPLACE " .*" "" n "${d}")
  list(APPEND agent_names ${n})
endforeach()
string(REPLACE ", " ";" module_list "${module_deps}")
set(recommends)
foreach(d ${module_list})
  string(REGEX REPLACE " .*" "" n "${d}")
  list(FIND agent_names ${n} at) # cpack runs this without the policy that allows IN_LIST
  if(at EQUAL -1)
    list(APPEND recommends "${d}")
  endif()
endforeach()
string(REPLACE ";" ", " recommends "${recommends}")

set(CPACK_DEBIAN_PACKAGE_DEPENDS "${agent_deps}, ${CPACK_MITTARI_DEPENDS}")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "${recommends}")
message(STATUS "Depends: ${CPACK_DEBIAN_PACKAGE_DEPENDS}")
message(STATUS "Recommends: ${CPACK_DEBIAN_PACKAGE_RECOMMENDS}")
