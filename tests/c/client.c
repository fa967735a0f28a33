#define _GNU_SOURCE
#include "client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(void *base, size_t off, const void *value, size_t len)
{
	memcpy((unsigned char *)base + off, value, len);
}

static void *get_ptr(const void *base, size_t off)
{
	void *p;

	memcpy(&p, (const unsigned char *)base + off, sizeof(p));
	return p;
}

static void *xcalloc(size_t size)
{
	void *p = calloc(1, size);

	if (p == NULL) {
		perror("calloc");
		exit(2);
	}
	return p;
}

static void *new_record(const struct client_spec *spec)
{
	unsigned char *record = xcalloc(CR_SIZE + spec->owner_alloc);
	size_t copy = spec->owner_len > 0 ? (size_t)spec->owner_len : 0;

	if (copy > spec->owner_alloc)
		copy = spec->owner_alloc;
#ifdef GSH15
	if (spec->server != NULL) {
		struct sockaddr_in v4 = { .sin_family = AF_INET, .sin_port = htons(2049) };
		struct sockaddr_in6 v6 = { .sin6_family = AF_INET6, .sin6_port = htons(2049) };

		if (inet_pton(AF_INET, spec->server, &v4.sin_addr) == 1)
			put(record, CR_SERVER_ADDR_OFF, &v4, sizeof(v4));
		else if (inet_pton(AF_INET6, spec->server, &v6.sin6_addr) == 1)
			put(record, CR_SERVER_ADDR_OFF, &v6, sizeof(v6));
		else
			abort();
	}
#else
	put(record, CR_SERVER_ADDR_OFF, &spec->server_addr, sizeof(uint32_t));
#endif
	put(record, CR_CLIENT_VAL_LEN_OFF, &spec->owner_len, sizeof(int));
	if (copy > 0)
		put(record, CR_CLIENT_VAL_OFF, spec->owner, copy);
	return record;
}

static void *new_gsh_client(const struct client_spec *spec)
{
	unsigned char *gsh;

	if (spec->caller == NULL)
		return NULL;
	gsh = xcalloc(GSH_CLIENT_SIZE);
	if (spec->caller_unterminated)
		memset(gsh + GSH_CLIENT_HOSTADDR_STR_OFF, '7', SOCK_NAME_MAX);
	else
		snprintf((char *)gsh + GSH_CLIENT_HOSTADDR_STR_OFF, SOCK_NAME_MAX, "%s",
			 spec->caller);
	return gsh;
}

nfs_client_id_t *client_new(const struct client_spec *spec)
{
	unsigned char *cid = xcalloc(CID_SIZE);
	void *record = new_record(spec);
	void *gsh = new_gsh_client(spec);

	put(cid, CID_CLIENTID_OFF, &spec->clientid, sizeof(uint64_t));
	put(cid, CID_CLIENT_RECORD_OFF, &record, sizeof(void *));
	put(cid, CID_MINORVERSION_OFF, &spec->minorversion, sizeof(uint32_t));
	put(cid, CID_GSH_CLIENT_OFF, &gsh, sizeof(void *));
	return (nfs_client_id_t *)cid;
}

void client_free(nfs_client_id_t *cid)
{
	if (cid == NULL)
		return;
	free(get_ptr(cid, CID_RECOV_TAG_OFF));
	free(get_ptr(cid, CID_CLIENT_RECORD_OFF));
	free(get_ptr(cid, CID_GSH_CLIENT_OFF));
	free(cid);
}

const char *client_tag(const nfs_client_id_t *cid)
{
	return get_ptr(cid, CID_RECOV_TAG_OFF);
}

/* isprint() in the C locale, which Ganesha runs in (it never calls setlocale). */
static bool owner_is_plain(const unsigned char *owner, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (owner[i] < 0x20 || owner[i] > 0x7e || owner[i] == '/')
			return false;
	return true;
}

static char *render_owner(const unsigned char *owner, size_t len)
{
	char *s;

	if (owner_is_plain(owner, len))
		return strndup((const char *)owner, len);
	s = malloc(2 + 2 * len + 1);
	if (s == NULL)
		return NULL;
	strcpy(s, "0x");
	for (size_t i = 0; i < len; i++)
		sprintf(s + 2 + 2 * i, "%02x", owner[i]);
	return s;
}

char *expected_tag(const char *caller, const unsigned char *owner, size_t owner_len)
{
	char *rendered = render_owner(owner, owner_len);
	char *tag = NULL;

	if (rendered == NULL)
		return NULL;
	if (asprintf(&tag, "%s-(%zu:%s)", caller != NULL ? caller : "(unknown)",
		     strlen(rendered), rendered) < 0)
		tag = NULL;
	free(rendered);
	return tag;
}

char *expected_base64url(const unsigned char *bytes, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc((len + 2) / 3 * 4 + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		uint32_t v = (uint32_t)bytes[i] << 16;

		if (n > 1)
			v |= (uint32_t)bytes[i + 1] << 8;
		if (n > 2)
			v |= bytes[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = n > 1 ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = n > 2 ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}
