/*
 * What the C harnesses of both Ganesha generations share (harness.c: 4.3 and an unknown
 * version; harness15.c: 15.2): the library opened as Ganesha opens it, PASS/FAIL
 * reporting, the list of clients a backend hands back, config loading, the store
 * directory.
 */
#ifndef HARNESS_COMMON_H
#define HARNESS_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"
#include "fake_ganesha.h"

#define DEFAULT_DIR "/var/lib/ganesha-ctdb"
#define NODE_ID "h1"
#define TAKEOVER_IP "10.77.1.3"
#define TAKEOVER_IP_HOST 0x0a4d0103u /* 10.77.1.3 in host byte order */

typedef void (*backend_init_fn)(struct nfs4_recovery_backend **);
typedef int (*load_config_fn)(config_file_t, struct config_error_type *);

struct harness {
	void *dl;
	backend_init_fn kv_init;
	backend_init_fn ng_init;
	backend_init_fn cluster_init;
	load_config_fn load_config;
	struct nfs4_recovery_backend *be;
	char store[4096];
	char libdir[4096];
};

/* ---- reporting ---------------------------------------------------------------------- */

extern int failures;
extern const char *scenario;

bool check(bool ok, const char *format, ...) __attribute__((format(printf, 2, 3)));
bool str_eq(const char *a, const char *b);
/* An error-level line (the library maps log::error! to NIV_CRIT) after mark with needle. */
bool logged_error(size_t mark, const char *needle);

/* ---- what the backend hands back (4.3: callbacks; 15.x: Ganesha's exports) ------------ */

#define MAX_OFFERED 64

extern clid_entry_t *offered[MAX_OFFERED];
extern size_t n_offered;
extern int foreign_rfh_calls; /* add_rfh_entry with an entry we did not hand out */

clid_entry_t *cb_add_clid_entry(char *cl_name);
rdel_fh_t *cb_add_rfh_entry(clid_entry_t *ent, char *rfh_name);
bool is_offered_entry(const clid_entry_t *ent);
void offered_reset(void);
size_t times_offered(const char *tag);
const clid_entry_t *offered_entry(const char *tag);
size_t rfh_count(const clid_entry_t *ent);
/* Offered exactly these tags (NULL-terminated), each once, and nothing else. */
bool offered_exactly(const char *const *tags);
void print_offered(void);

/* ---- configuration ---------------------------------------------------------------- */

/* The parser's messages for the last load. */
extern char *last_diag;
int load_config(struct harness *h, const struct config_root *tree,
		struct config_error_type *err);
const struct fake_kv *valid_items(const struct harness *h, size_t *n);
/* ganesha.nfsd's start up to the backend's table: parse the config (the plugin's block
 * with valid_items included) and call rados_cluster_backend_init into h->be. 0, or -1000
 * when the config is refused (ganesha.nfsd would exit), -1001 when no table came back. */
int ganesha_configure(struct harness *h);

/* ---- the store directory and set-up ---------------------------------------------- */

bool file_contains(const char *path, const char *needle);
/* Number of (non-hidden) files in the store whose content holds both needles. */
int store_files_with(const struct harness *h, const char *needle, const char *also);
void *symbol(void *dl, const char *name);
void make_dir(const char *path);
/* Ganesha dlopen()s "libganesha_rados_recov.so"; give the library that name. */
void open_library(struct harness *h, const char *library, const char *work);

#endif
