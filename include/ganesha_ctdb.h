/*
 * What libganesha_ctdb_recov.so exports. Ganesha 4.3-6.2 dlopen()s a library named
 * libganesha_rados_recov.so when NFSv4 { RecoveryBackend = rados_kv | rados_ng |
 * rados_cluster; } and requires exactly these four symbols; all of them give the
 * ganesha-ctdb backend, whichever name the configuration used.
 */
#ifndef GANESHA_CTDB_H
#define GANESHA_CTDB_H

#include "ganesha_abi.h"

void rados_kv_backend_init(struct nfs4_recovery_backend **backend);
void rados_ng_backend_init(struct nfs4_recovery_backend **backend);
void rados_cluster_backend_init(struct nfs4_recovery_backend **backend);

/* Parses the CTDB_RECOVERY { } block; 0 on success, -1 (Ganesha then refuses to start)
 * when the block has an unknown key or a bad value. */
int rados_load_config_from_parse(config_file_t parse_tree, struct config_error_type *err_type);

#endif
