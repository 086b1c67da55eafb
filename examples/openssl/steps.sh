#!/bin/sh
# The OpenSSL example's steps (POSIX sh), one per subcommand; run.sh runs them in order.
#
#   steps.sh fetch DIR         write this process's X.509-SVID (svid.0.pem), its key (svid.0.key, 0600)
#                              and the trust bundle (bundle.0.pem) to DIR: signet svid fetch --write
#   steps.sh serve DIR PORT    openssl s_server on 127.0.0.1:PORT with the SVID in DIR; a client must
#                              present a certificate that chains to DIR's bundle, else the handshake
#                              fails; answers HTTP with a page that shows the client's certificate
#   steps.sh connect DIR PORT [CERT]
#                              openssl s_client with the SVID in DIR (or DIR/CERT.pem and DIR/CERT.key;
#                              CERT "none": no certificate), verifying the server against DIR's bundle,
#                              and one GET; exits 0 only if the server accepted the client
#   steps.sh impostor DIR      a self-signed certificate that claims the SPIFFE ID of the SVID in DIR,
#                              in DIR/impostor.pem and DIR/impostor.key: the server must refuse it
#
# The Workload API socket is $SPIFFE_ENDPOINT_SOCKET; SIGNET is the signet binary (default: signet).
set -eu
SIGNET=${SIGNET:-signet}

usage() {
	sed -n '3,16s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

[ $# -ge 2 ] || usage
step=$1 dir=$2
case $step in
fetch)
	"$SIGNET" svid fetch --write "$dir"
	echo "$dir/svid.0.pem holds $(openssl x509 -in "$dir/svid.0.pem" -noout -ext subjectAltName | sed -n 's/^ *//;2p')"
	;;
serve)
	[ $# -eq 3 ] || usage
	# -Verify 1 -verify_return_error: a client certificate is required and must chain to the bundle.
	# -tls1_3: TLS 1.3 only. -num_tickets 0: no session tickets (every connection is verified anew).
	# stdin is not read: -www answers each request with a status page, the client's certificate in it.
	exec openssl s_server -accept "127.0.0.1:$3" -cert "$dir/svid.0.pem" -key "$dir/svid.0.key" \
		-CAfile "$dir/bundle.0.pem" -Verify 1 -verify_return_error -tls1_3 -num_tickets 0 -www </dev/null
	;;
connect)
	[ $# -eq 3 ] || [ $# -eq 4 ] || usage
	cert=${4:-svid.0}
	set -- -connect "127.0.0.1:$3" -CAfile "$dir/bundle.0.pem"
	[ "$cert" = none ] || set -- "$@" -cert "$dir/$cert.pem" -key "$dir/$cert.key"
	# -verify_return_error: stop unless the server's certificate chains to the bundle. -ign_eof: read the
	# whole answer. s_client exits 1 if the server refused the client's certificate.
	printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client "$@" -verify_return_error -tls1_3 -ign_eof
	;;
impostor)
	id=$(openssl x509 -in "$dir/svid.0.pem" -noout -ext subjectAltName | sed -n 's/^ *//;2p')
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /O=Impostor \
		-addext "subjectAltName=$id" -keyout "$dir/impostor.key" -out "$dir/impostor.pem" 2>/dev/null
	echo "$dir/impostor.pem claims $id, signed by itself"
	;;
*)
	usage
	;;
esac
