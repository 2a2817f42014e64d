//! `berth images` and `berth rmi`.

use clap::Args;

use crate::cri::v1::{ImageFilter, ImageSpec, ListImagesRequest, RemoveImageRequest};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output::{self, Format, Output};
use super::resolve;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only the images this reference names
    pub image: Option<String>,
    /// Only the image IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images by reference, ID or unique ID prefix
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn images(args: ImagesArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let filter = args.image.map(|image| ImageFilter { image: Some(ImageSpec { image, ..Default::default() }) });
    let listed = cri.call("ListImages", cri.images().list_images(ListImagesRequest { filter })).await?;
    if args.quiet {
        let ids: String = listed.images.iter().map(|i| format!("{}\n", i.id)).collect();
        return output::emit(&ids).await;
    }
    if args.output.format != Format::Table {
        return output::emit(&output::render(args.output.format, &listed)?).await;
    }
    let mut table = output::table(&["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    for image in &listed.images {
        let size = indicatif::HumanBytes(image.size).to_string();
        let names = repo_and_tags(&image.repo_tags, &image.repo_digests);
        for (repo, tag) in names {
            table.add_row([repo, tag, output::short_id(&image.id), size.clone()]);
        }
    }
    output::emit_table(&table).await
}

/// One row per tag; an image known only by digest shows its repository
/// with `<none>`, one known by nothing `<none> <none>`, as crictl shows them.
fn repo_and_tags(tags: &[String], digests: &[String]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = tags
        .iter()
        .map(|tag| match tag.rsplit_once(':').filter(|(repo, tag)| !tag.contains('/') && !repo.is_empty()) {
            Some((repo, tag)) => (repo.to_string(), tag.to_string()),
            None => (tag.clone(), "<none>".into()),
        })
        .collect();
    if rows.is_empty() {
        let repo = digests.first().and_then(|d| d.split_once('@')).map_or("<none>", |(repo, _)| repo);
        rows.push((repo.to_string(), "<none>".into()));
    }
    rows
}

pub async fn rmi(args: RmiArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    for wanted in &args.images {
        let id = resolve::image(&cri, wanted).await?;
        let image = Some(ImageSpec { image: id.clone(), ..Default::default() });
        cri.call("RemoveImage", cri.images().remove_image(RemoveImageRequest { image })).await?;
        output::emit(&format!("Deleted: {wanted}\n")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_at_the_last_colon_not_a_registry_port() {
        let rows = repo_and_tags(&["localhost:5000/test/busybox:latest".into()], &[]);
        assert_eq!(rows, [("localhost:5000/test/busybox".to_string(), "latest".to_string())]);
        let rows = repo_and_tags(&[], &["localhost:5000/x@sha256:ab".into()]);
        assert_eq!(rows, [("localhost:5000/x".to_string(), "<none>".to_string())]);
        assert_eq!(repo_and_tags(&[], &[]), [("<none>".to_string(), "<none>".to_string())]);
    }
}
