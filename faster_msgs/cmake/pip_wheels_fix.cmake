# Build-time fix for ROS 2 installed from the PyPI wheels; not needed with a normal ROS install.
#
# The wheels' exported <pkg>__rosidl_generator_py targets (std_msgs, builtin_interfaces, ...) carry
# the wheel builder's Python include dirs in INTERFACE_INCLUDE_DIRECTORIES, paths that exist on no
# user's machine, and CMake refuses to generate with them. Pass this file as
#   -DCMAKE_PROJECT_INCLUDE=<path>/pip_wheels_fix.cmake
# It runs right after project(); the rewrite is deferred to the end of the top-level CMakeLists,
# once find_package() has created the imported targets and before the generate step checks them.
# Missing include dirs are dropped and the local Python / NumPy include dirs are added.

function(_faster_msgs_fix_rosidl_py_includes)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  set(_local_dirs ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
  get_directory_property(_imported IMPORTED_TARGETS)
  foreach(_target IN LISTS _imported)
    if(NOT _target MATCHES "__rosidl_generator_py$")
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(EXISTS "${_dir}")
        list(APPEND _fixed "${_dir}")
      else()
        set(_changed TRUE)
      endif()
    endforeach()
    if(_changed)
      list(APPEND _fixed ${_local_dirs})
      list(REMOVE_DUPLICATES _fixed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
      message(STATUS "pip_wheels_fix: ${_target} include dirs -> ${_fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER CALL _faster_msgs_fix_rosidl_py_includes)
