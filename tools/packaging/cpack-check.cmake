# Read by cpack before it builds each package (CPACK_PROJECT_CONFIG_FILE).
# A .deb must install under /usr, with its configuration in /etc: both come
# from CMAKE_INSTALL_PREFIX at configure time, so check it here rather than
# ship a package that writes to /usr/local.
if(CPACK_GENERATOR STREQUAL "DEB" AND
   NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR
    "The .deb needs a build configured with -DCMAKE_INSTALL_PREFIX=/usr "
    "(this one has ${CPACK_PACKAGING_INSTALL_PREFIX})")
endif()
