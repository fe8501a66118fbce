echo "hello_world.sh ran in $(pwd) as $(id -un 2>/dev/null || id -u)"
greet world
