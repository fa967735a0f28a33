/*
 * Ganesha client objects built as raw buffers at the measured offsets (gsh.h: 4.3's, or
 * 15.2's with -DGSH15), and
 * what Ganesha would compute from them, written independently of the library under test.
 */
#ifndef CLIENT_H
#define CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "gsh.h"

struct client_spec {
	uint64_t clientid;
	uint32_t minorversion;
	uint32_t server_addr;           /* 4.3: cr_server_addr, host byte order; 0 for v4.0 */
	const char *server;             /* 15.x: cr_server_addr as a sockaddr (IPv4/IPv6 text) */
	const char *caller;             /* gsh_client->hostaddr_str; NULL: no gsh_client */
	bool caller_unterminated;       /* fill hostaddr_str with 128 non-NUL bytes */
	const unsigned char *owner;
	int owner_len;                  /* cr_client_val_len as stored, even if hostile */
	size_t owner_alloc;             /* bytes allocated after the record header */
};

/* calloc'd nfs_client_id_t (CID_SIZE bytes) with its client record and gsh_client. */
nfs_client_id_t *client_new(const struct client_spec *spec);

/* What Ganesha's free_client_id does with the parts we built: frees cid_recov_tag (with
 * free(), if set), the record, the gsh_client and the client. */
void client_free(nfs_client_id_t *cid);

/* cid_recov_tag, or NULL. */
const char *client_tag(const nfs_client_id_t *cid);

/* The tag Ganesha's backends compute (rados_kv_create_val): "<addr>-(<n>:<s>)", addr the
 * caller's hostaddr_str or "(unknown)", s the owner as is when every byte is isprint()
 * in the C locale and none is '/', else "0x" and lowercase hex; n = strlen(s). malloc'd. */
char *expected_tag(const char *caller, const unsigned char *owner, size_t owner_len);

/* base64url with '=' padding (Ganesha's base64url_encode). malloc'd. */
char *expected_base64url(const unsigned char *bytes, size_t len);

#endif
