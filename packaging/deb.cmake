# The Debian package (included by CMakeLists.txt when MITTARI_PACKAGE is on;
# packaging/build-deb.sh configures it). Built with `cpack -G DEB`.
# What it holds and why: docs/operations.md, "Installing the package".
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "MITTARI_PACKAGE needs -DCMAKE_INSTALL_PREFIX=/usr (packaging/build-deb.sh)")
endif()

# The production configuration: conffiles under /etc/mittari/conf.d, the
# device profiles beside it. root:mittari 0750/0640 is set by postinst
# (dpkg-statoverride: the group does not exist before it runs); until then
# root-only.
set(MITTARI_ETC /etc/mittari)
file(GLOB MITTARI_PROD_CONF CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/packaging/etc/conf.d/*.yaml)
file(GLOB MITTARI_PROFILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/conf.d/profiles/*.yaml)
set(MITTARI_CONF_PERMS PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
foreach(d ${MITTARI_ETC} ${MITTARI_ETC}/conf.d ${MITTARI_ETC}/conf.d/profiles)
  install(DIRECTORY DESTINATION ${d}
    DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE)
endforeach()
install(FILES ${MITTARI_PROD_CONF} DESTINATION ${MITTARI_ETC}/conf.d ${MITTARI_CONF_PERMS})
install(FILES ${MITTARI_PROFILES} DESTINATION ${MITTARI_ETC}/conf.d/profiles ${MITTARI_CONF_PERMS})
set(conffiles "")
foreach(f ${MITTARI_PROD_CONF})
  get_filename_component(n ${f} NAME)
  string(APPEND conffiles "${MITTARI_ETC}/conf.d/${n}\n")
endforeach()
foreach(f ${MITTARI_PROFILES})
  get_filename_component(n ${f} NAME)
  string(APPEND conffiles "${MITTARI_ETC}/conf.d/profiles/${n}\n")
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/debian/conffiles "${conffiles}")
foreach(script postinst prerm postrm)
  configure_file(${PROJECT_SOURCE_DIR}/packaging/debian/${script} ${CMAKE_BINARY_DIR}/debian/${script}
    COPYONLY)
endforeach()

set(MITTARI_DEB_REVISION 1 CACHE STRING "Debian revision: the N of VERSION-N")
set(MITTARI_DEB_MAINTAINER "mittari developers <mittari@invalid>" CACHE STRING "Maintainer field")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mittari)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${MITTARI_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "data-collection agent for municipal site gateways")
set(CPACK_PACKAGE_DESCRIPTION "mittari collects readings from people counters, card readers and
feedback terminals at the sites of Finnish municipalities (libraries, swimming
halls, trails), pseudonymises identifiers at the edge, stores every reading in
a local SQLite log first and delivers it from there to the municipality's
knowledge-management systems.
.
This package holds the agent, its device plugins, its output modules (HTTP,
MQTT, PostgreSQL; their client libraries are recommended and needed only by
a configuration that uses them), the plugin SDK (header, pkg-config file,
CMake package), the systemd unit, man pages and a production configuration
in /etc/mittari/conf.d. The service starts once the configuration names a
site and an input.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${MITTARI_DEB_REVISION})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Run-time dependencies only: the libraries the binary and the input plugins
# link (dpkg-shlibdeps) plus what postinst and the agent use without linking
# (CPACK_MITTARI_DEPENDS; keep in step with RUN_PKGS in packaging/dev/deps.sh;
# test_deb checks); what only the output modules link is recommended, not
# required. Computed at cpack time by packaging/deb-deps.cmake, since CPack's
# own SHLIBDEPS would put every library of every file into Depends.
# Never a compiler, valgrind or a test daemon.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
set(CPACK_MITTARI_DEPENDS "passwd, tzdata")
set(CPACK_MITTARI_BINARY_DIR ${CMAKE_BINARY_DIR})
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_SOURCE_DIR}/packaging/deb-deps.cmake)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "pcscd, bluez")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_BINARY_DIR}/debian/conffiles ${CMAKE_BINARY_DIR}/debian/postinst
  ${CMAKE_BINARY_DIR}/debian/prerm ${CMAKE_BINARY_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
