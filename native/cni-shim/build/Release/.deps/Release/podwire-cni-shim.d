cmd_Release/podwire-cni-shim := g++ -o Release/podwire-cni-shim -pthread -rdynamic -m64  -Wl,--start-group ./Release/obj.target/podwire-cni-shim/shim.o  -Wl,--end-group
