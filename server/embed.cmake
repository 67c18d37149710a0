# embed.cmake - write a file's bytes into a C source as an array, so that
# the binary carries it (the status page of the monitoring endpoint).
#
#   cmake -DIN=page.html -DOUT=page.c -DNAME=symbol -P embed.cmake
#
# defines `const unsigned char symbol[]` (NUL-terminated) and
# `const size_t symbol_len` (the file's size, without that NUL).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR size "${digits} / 2")
# Sixteen bytes per line keeps the generated file readable in an editor.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n    " bytes
       "${bytes}")
get_filename_component(src "${IN}" NAME)
file(WRITE "${OUT}.tmp"
  "/* Generated from ${src} by embed.cmake: edit ${src} instead. */\n"
  "#include <stddef.h>\n\n"
  "const unsigned char ${NAME}[] = {\n    ${bytes}0x00};\n"
  "const size_t ${NAME}_len = ${size};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
