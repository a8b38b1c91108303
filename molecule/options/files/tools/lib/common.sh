# shellcheck shell=sh
greet() { echo "hello from the tools folder${1:+, $1}"; }
