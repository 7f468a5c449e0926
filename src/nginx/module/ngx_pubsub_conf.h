/*
 * ngx_pubsub: what the module's files share among themselves - the
 * directive handlers (ngx_pubsub_directives.cpp) named in the directive
 * table, and the content handler (ngx_pubsub_router.cpp) they install.
 */

#ifndef _NGX_PUBSUB_CONF_H_INCLUDED_
#define _NGX_PUBSUB_CONF_H_INCLUDED_

#include "ngx_pubsub.h"


char *ngx_pubsub_role(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_pubsub_presence_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_pubsub_channel_id_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_pubsub_first_message(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_pubsub_longpoll_multipart(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_pubsub_separator(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

ngx_int_t ngx_pubsub_handler(ngx_http_request_t *r);
/* postconfiguration: the rewrite-phase handler of ngx_pubsub_router.cpp */
ngx_int_t ngx_pubsub_router_init(ngx_conf_t *cf);

#endif /* _NGX_PUBSUB_CONF_H_INCLUDED_ */
