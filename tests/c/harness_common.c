/* See harness_common.h. */
#define _GNU_SOURCE
#include "harness_common.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reporting --------------------------------------------------------------------- */

int failures;
const char *scenario = "-";

bool check(bool ok, const char *format, ...)
{
	va_list args;

	printf("%s (%s) ", ok ? "PASS" : "FAIL", scenario);
	va_start(args, format);
	vprintf(format, args);
	va_end(args);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		failures++;
	return ok;
}

bool str_eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* An error-level line (the library maps log::error! to NIV_CRIT) after mark with needle. */
bool logged_error(size_t mark, const char *needle)
{
	return fake_log_grep(mark, " :NIV_CRIT :", needle, NULL) != NULL;
}

/* ---- Ganesha's callbacks: nfs4_add_clid_entry / nfs4_add_rfh_entry ----------------- */

clid_entry_t *offered[MAX_OFFERED];
size_t n_offered;
int foreign_rfh_calls; /* add_rfh_entry with an entry we did not hand out */

static void glist_init(struct glist_head *head)
{
	head->next = head->prev = head;
}

static void glist_add(struct glist_head *head, struct glist_head *node)
{
	node->next = head->next;
	node->prev = head;
	head->next->prev = node;
	head->next = node;
}

clid_entry_t *cb_add_clid_entry(char *cl_name)
{
	clid_entry_t *ent = malloc(sizeof(*ent));

	if (ent == NULL || n_offered == MAX_OFFERED)
		abort();
	glist_init(&ent->cl_list);
	glist_init(&ent->cl_rfh_list);
	/* strlcpy(ent->cl_name, cl_name, sizeof(ent->cl_name)) */
	snprintf(ent->cl_name, sizeof(ent->cl_name), "%s", cl_name);
	offered[n_offered++] = ent;
	return ent;
}

bool is_offered_entry(const clid_entry_t *ent)
{
	for (size_t i = 0; i < n_offered; i++)
		if (offered[i] == ent)
			return true;
	return false;
}

rdel_fh_t *cb_add_rfh_entry(clid_entry_t *ent, char *rfh_name)
{
	rdel_fh_t *rfh;

	if (!is_offered_entry(ent)) {
		foreign_rfh_calls++;
		return NULL;
	}
	rfh = malloc(sizeof(*rfh));
	if (rfh == NULL)
		abort();
	rfh->rdfh_handle_str = strdup(rfh_name);
	glist_add(&ent->cl_rfh_list, &rfh->rdfh_list);
	return rfh;
}

void offered_reset(void)
{
	for (size_t i = 0; i < n_offered; i++) {
		struct glist_head *head = &offered[i]->cl_rfh_list;

		while (head->next != head) {
			rdel_fh_t *rfh = (rdel_fh_t *)head->next;

			head->next = rfh->rdfh_list.next;
			free(rfh->rdfh_handle_str);
			free(rfh);
		}
		free(offered[i]);
	}
	n_offered = 0;
	foreign_rfh_calls = 0;
}

size_t times_offered(const char *tag)
{
	size_t n = 0;

	for (size_t i = 0; i < n_offered; i++)
		n += str_eq(offered[i]->cl_name, tag);
	return n;
}

const clid_entry_t *offered_entry(const char *tag)
{
	for (size_t i = 0; i < n_offered; i++)
		if (str_eq(offered[i]->cl_name, tag))
			return offered[i];
	return NULL;
}

size_t rfh_count(const clid_entry_t *ent)
{
	size_t n = 0;

	for (const struct glist_head *p = ent->cl_rfh_list.next; p != &ent->cl_rfh_list;
	     p = p->next)
		n++;
	return n;
}

/* Offered exactly these tags (NULL-terminated), each once, and nothing else. */
bool offered_exactly(const char *const *tags)
{
	size_t n = 0;

	for (; tags[n] != NULL; n++)
		if (times_offered(tags[n]) != 1)
			return false;
	return n == n_offered && foreign_rfh_calls == 0;
}

void print_offered(void)
{
	for (size_t i = 0; i < n_offered; i++)
		printf("      offered: %s (%zu revoked handles)\n", offered[i]->cl_name,
		       rfh_count(offered[i]));
}


/* The parser's messages for the last load (Ganesha's init_error_type opens a memstream
 * for them; report_config_errors logs them afterwards). */
char *last_diag;

int load_config(struct harness *h, const struct config_root *tree,
		       struct config_error_type *err)
{
	int rc;

	free(last_diag);
	last_diag = NULL;
	memset(err, 0, sizeof(*err));
	err->fp = open_memstream(&err->diag_buf, &err->diag_buf_size);
	if (err->fp == NULL)
		abort();
	rc = h->load_config((config_file_t)tree, err);
	fclose(err->fp);
	err->fp = NULL;
	last_diag = err->diag_buf;
	err->diag_buf = NULL;
	if (last_diag[0] != '\0')
		printf("      config messages:\n%s", last_diag);
	return rc;
}

const struct fake_kv *valid_items(const struct harness *h, size_t *n)
{
	static struct fake_kv items[3];

	items[0] = (struct fake_kv){ "Store", "dir" };
	items[1] = (struct fake_kv){ "Dir", h->store };
	items[2] = (struct fake_kv){ "Node_Id", NODE_ID };
	*n = 3;
	return items;
}

/* What ganesha.nfsd does from its start to the replay of the saved clients: parse the
 * config (the plugin's block included), init the backend, recovery_init, set_enforcing,
 * recovery_read_clids(NULL). Returns recovery_init's result. */

int ganesha_configure(struct harness *h)
{
	struct config_root tree = { .filename = "ganesha.conf", .block_name = "CTDB_RECOVERY" };
	struct config_error_type err;

	tree.items = valid_items(h, &tree.n_items);
	if (load_config(h, &tree, &err) != 0)
		return -1000;
	h->be = NULL;
	h->cluster_init(&h->be);
	return h->be == NULL ? -1001 : 0;
}

/* ---- the store directory ----------------------------------------------------------- */

bool file_contains(const char *path, const char *needle)
{
	char buf[8192];
	FILE *f = fopen(path, "r");
	size_t len;

	if (f == NULL)
		return false;
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

/* Number of (non-hidden) files in the store whose content holds both needles. */
int store_files_with(const struct harness *h, const char *needle, const char *also)
{
	DIR *dir = opendir(h->store);
	struct dirent *de;
	int n = 0;

	if (dir == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		char path[8192];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", h->store, de->d_name);
		n += file_contains(path, needle) && (also == NULL || file_contains(path, also));
	}
	closedir(dir);
	return n;
}


/* ---- set-up ------------------------------------------------------------------------ */

void *symbol(void *dl, const char *name)
{
	void *sym = dlsym(dl, name);

	if (sym == NULL) {
		fprintf(stderr, "harness: %s missing: %s\n", name, dlerror());
		exit(2);
	}
	return sym;
}

void make_dir(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "harness: mkdir %s: %s\n", path, strerror(errno));
		exit(2);
	}
}

/* Ganesha dlopen()s "libganesha_rados_recov.so"; give the library that name. */
void open_library(struct harness *h, const char *library, const char *work)
{
	char link[8192];
	char *real = realpath(library, NULL);

	if (real == NULL) {
		fprintf(stderr, "harness: %s: %s\n", library, strerror(errno));
		exit(2);
	}
	snprintf(h->libdir, sizeof(h->libdir), "%s/lib", work);
	snprintf(h->store, sizeof(h->store), "%s/store", work);
	make_dir(h->libdir);
	make_dir(h->store);
	snprintf(link, sizeof(link), "%s/libganesha_rados_recov.so", h->libdir);
	unlink(link);
	if (symlink(real, link) != 0) {
		fprintf(stderr, "harness: symlink %s: %s\n", link, strerror(errno));
		exit(2);
	}
	free(real);
	h->dl = dlopen(link, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (h->dl == NULL) {
		fprintf(stderr, "harness: dlopen %s: %s\n", link, dlerror());
		exit(2);
	}
	h->kv_init = (backend_init_fn)symbol(h->dl, "rados_kv_backend_init");
	h->ng_init = (backend_init_fn)symbol(h->dl, "rados_ng_backend_init");
	h->cluster_init = (backend_init_fn)symbol(h->dl, "rados_cluster_backend_init");
	h->load_config = (load_config_fn)symbol(h->dl, "rados_load_config_from_parse");
}